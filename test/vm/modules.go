package vm

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// Module is a kernel module file and the modules it needs loaded first.
type Module struct {
	Name    string
	Path    string
	Depends []string
}

// modName normalises a module name as the kernel does: dashes and underscores are the same.
func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// ReadModinfo reads a module's name and dependencies from its .modinfo section, which depmod
// reads too; the Debian package ships no modules.dep, and busybox insmod does not resolve
// dependencies, so the VM loads modules in the order ModuleOrder computes.
func ReadModinfo(path string) (Module, error) {
	f, err := elf.Open(path)
	if err != nil {
		return Module{}, fmt.Errorf("read module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return Module{}, fmt.Errorf("read module %s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return Module{}, fmt.Errorf("read module %s: %w", path, err)
	}
	m := Module{Name: modName(strings.TrimSuffix(filepath.Base(path), ".ko")), Path: path}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			m.Name = modName(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					m.Depends = append(m.Depends, modName(d))
				}
			}
		}
	}
	return m, nil
}

// ModuleOrder returns the modules named, and every module they depend on, from the tree under
// dir, in an order in which each can be loaded.
func ModuleOrder(dir string, names ...string) ([]Module, error) {
	paths := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			paths[modName(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list modules in %s: %w", dir, err)
	}
	var order []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module %s: dependency cycle", name)
		case 2:
			return nil
		}
		p, ok := paths[name]
		if !ok {
			if from != "" {
				return fmt.Errorf("module %s (needed by %s) not found in %s", name, from, dir)
			}
			return fmt.Errorf("module %s not found in %s", name, dir)
		}
		state[name] = 1
		m, err := ReadModinfo(p)
		if err != nil {
			return err
		}
		for _, d := range m.Depends {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, m)
		return nil
	}
	for _, n := range names {
		if err := visit(modName(n), ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}
