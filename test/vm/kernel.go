// Package vm boots Debian's stock kernel under qemu to test what this machine's kernel cannot
// run: the IPVS fallback data plane (this CI kernel has no ip_vs module). It fetches the
// kernel package with apt, builds an initramfs of busybox, iproute2, the kernel modules and
// static Go test binaries, boots it with qemu-system-x86_64 under software emulation, and reads
// the guest's go test output back from the serial console.
package vm

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// MetaPackage is the Debian package that always depends on the current stock kernel.
const MetaPackage = "linux-image-amd64"

// Kernel is the part of a Debian kernel package the VM needs, unpacked in a cache directory.
type Kernel struct {
	// Package is the real kernel package, such as linux-image-6.1.0-56-amd64.
	Package string
	// Release is the kernel release (uname -r), such as 6.1.0-56-amd64.
	Release string
	// Vmlinuz is the kernel image.
	Vmlinuz string
	// Modules is the lib/modules/RELEASE directory holding the cached modules.
	Modules string
}

// kept reports whether a path of the kernel package is cached: the kernel image and the
// modules a network test can need (net/, lib/, crypto/ and the virtual network drivers), about
// 50 MB of the 400 MB package.
func kept(name string) bool {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	if strings.HasPrefix(name, "boot/vmlinuz-") {
		return true
	}
	if !strings.HasPrefix(name, "lib/modules/") || !strings.HasSuffix(name, ".ko") {
		return false
	}
	parts := strings.SplitN(name, "/", 5) // lib modules RELEASE kernel REST
	if len(parts) < 5 || parts[3] != "kernel" {
		return false
	}
	rest := parts[4]
	return strings.HasPrefix(rest, "net/") || strings.HasPrefix(rest, "lib/") || strings.HasPrefix(rest, "crypto/") ||
		rest == "drivers/net/veth.ko" || rest == "drivers/net/dummy.ko"
}

var dependsRE = regexp.MustCompile(`(?m)^\s*Depends:\s*(linux-image-[0-9][^\s]*)\s*$`)

// ResolvePackage returns the kernel package MetaPackage depends on, running apt-get update once
// if the package lists do not know it yet.
func ResolvePackage(ctx context.Context) (string, error) {
	var last error
	for attempt := 0; attempt < 2; attempt++ {
		out, err := exec.CommandContext(ctx, "apt-cache", "depends", MetaPackage).CombinedOutput()
		if err == nil {
			if m := dependsRE.FindSubmatch(out); m != nil {
				return string(m[1]), nil
			}
			err = fmt.Errorf("no linux-image dependency in: %s", bytes.TrimSpace(out))
		}
		last = fmt.Errorf("apt-cache depends %s: %w", MetaPackage, err)
		if attempt == 0 {
			if out, err := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
				return "", errors.Join(last, fmt.Errorf("apt-get update: %w: %s", err, bytes.TrimSpace(out)))
			}
		}
	}
	return "", last
}

// FetchDebianKernel returns Debian's current stock kernel, unpacked under cacheDir. The first
// call downloads the package with apt-get; later calls find it in the cache.
func FetchDebianKernel(ctx context.Context, cacheDir string) (Kernel, error) {
	pkg, err := ResolvePackage(ctx)
	if err != nil {
		return Kernel{}, err
	}
	dir := filepath.Join(cacheDir, pkg)
	if k, err := cachedKernel(pkg, dir); err == nil {
		return k, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return Kernel{}, fmt.Errorf("create kernel cache: %w", err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".fetch-")
	if err != nil {
		return Kernel{}, fmt.Errorf("create kernel cache: %w", err)
	}
	defer os.RemoveAll(tmp)

	dl := exec.CommandContext(ctx, "apt-get", "download", pkg)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return Kernel{}, fmt.Errorf("apt-get download %s: %w: %s", pkg, err, bytes.TrimSpace(out))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(debs) != 1 {
		return Kernel{}, fmt.Errorf("apt-get download %s: found %d .deb files", pkg, len(debs))
	}
	tree := filepath.Join(tmp, "tree")
	if err := unpackDeb(ctx, debs[0], tree); err != nil {
		return Kernel{}, err
	}
	if err := os.WriteFile(filepath.Join(tree, cacheStamp), []byte(cacheFormat+"\n"), 0o644); err != nil {
		return Kernel{}, fmt.Errorf("store kernel in cache: %w", err)
	}
	// Rename makes the cache entry appear whole or not at all. A concurrent run may have
	// stored the same kernel meanwhile: use its copy rather than remove it under its feet.
	if k, err := cachedKernel(pkg, dir); err == nil {
		return k, nil
	}
	os.RemoveAll(dir)
	if err := os.Rename(tree, dir); err != nil {
		if k, cerr := cachedKernel(pkg, dir); cerr == nil {
			return k, nil
		}
		return Kernel{}, fmt.Errorf("store kernel in cache: %w", err)
	}
	return cachedKernel(pkg, dir)
}

// cacheFormat changes whenever kept does, so that a cache written by an older harness is
// fetched again instead of lacking modules.
const (
	cacheFormat = "2"
	cacheStamp  = "sluice-cache-format"
)

func cachedKernel(pkg, dir string) (Kernel, error) {
	if b, err := os.ReadFile(filepath.Join(dir, cacheStamp)); err != nil || strings.TrimSpace(string(b)) != cacheFormat {
		return Kernel{}, fmt.Errorf("kernel cache %s: not written by this harness version", dir)
	}
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return Kernel{}, fmt.Errorf("kernel cache %s: %d kernel images", dir, len(images))
	}
	release := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	mods := filepath.Join(dir, "lib", "modules", release)
	if _, err := os.Stat(filepath.Join(mods, "kernel", "net", "netfilter", "ipvs", "ip_vs.ko")); err != nil {
		return Kernel{}, fmt.Errorf("kernel cache %s: %w", dir, err)
	}
	return Kernel{Package: pkg, Release: release, Vmlinuz: images[0], Modules: mods}, nil
}

// unpackDeb extracts the kept files of a .deb into dir, reading its file tree from dpkg-deb.
func unpackDeb(ctx context.Context, deb, dir string) error {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile: %w", err)
	}
	terr := untar(bufio.NewReader(out), dir)
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, err, bytes.TrimSpace(stderr.Bytes()))
	}
	if terr != nil {
		return fmt.Errorf("unpack %s: %w", deb, terr)
	}
	return nil
}

// maxFile bounds one extracted file; the largest kept file, the kernel image, is about 8 MB.
const maxFile = 256 << 20

func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg || !kept(h.Name) {
			continue
		}
		if h.Size > maxFile {
			return fmt.Errorf("%s: %d bytes, more than %d", h.Name, h.Size, maxFile)
		}
		dst := filepath.Join(dir, filepath.FromSlash(path.Clean("/"+h.Name)))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, io.LimitReader(tr, maxFile))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", dst, err)
		}
	}
}
