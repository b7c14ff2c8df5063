package vm

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strings"
)

// Image is an initramfs under construction: a list of entries written, in the order added, as
// an uncompressed cpio "newc" archive, the format the kernel unpacks into its root file system.
// Parent directories are added automatically.
type Image struct {
	entries []entry
	have    map[string]bool
}

type entry struct {
	name   string // without a leading slash
	mode   uint32 // type and permission bits, as in stat(2)
	data   []byte
	source string // a host file read at write time, when data is nil
}

const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
)

func (im *Image) add(e entry) error {
	e.name = strings.TrimPrefix(path.Clean("/"+e.name), "/")
	if e.name == "" {
		return fmt.Errorf("initramfs: empty path")
	}
	if im.have == nil {
		im.have = map[string]bool{}
	}
	if im.have[e.name] {
		if e.mode&0o170000 == modeDir {
			return nil
		}
		return fmt.Errorf("initramfs: %s added twice", e.name)
	}
	if dir := path.Dir(e.name); dir != "." {
		if err := im.add(entry{name: dir, mode: modeDir | 0o755}); err != nil {
			return err
		}
	}
	im.have[e.name] = true
	im.entries = append(im.entries, e)
	return nil
}

// Dir adds a directory.
func (im *Image) Dir(name string) error { return im.add(entry{name: name, mode: modeDir | 0o755}) }

// Bytes adds a regular file with the given content and permissions.
func (im *Image) Bytes(name string, perm fs.FileMode, data []byte) error {
	return im.add(entry{name: name, mode: modeRegular | uint32(perm.Perm()), data: data})
}

// File adds a copy of host file src (following symlinks) at name.
func (im *Image) File(name string, perm fs.FileMode, src string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return im.add(entry{name: name, mode: modeRegular | uint32(perm.Perm()), source: src})
}

// Symlink adds a symbolic link name pointing at target.
func (im *Image) Symlink(name, target string) error {
	return im.add(entry{name: name, mode: modeSymlink | 0o777, data: []byte(target)})
}

var lddRE = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)`)

// Program adds the dynamically linked host program src at name together with every shared
// library ldd reports for it, at the paths the dynamic loader looks them up.
func (im *Image) Program(name, src string) error {
	if err := im.File(name, 0o755, src); err != nil {
		return err
	}
	out, err := exec.Command("ldd", src).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("not a dynamic executable")) {
			return nil
		}
		return fmt.Errorf("ldd %s: %w: %s", src, err, bytes.TrimSpace(out))
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := lddRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if im.have[strings.TrimPrefix(m[1], "/")] {
			continue
		}
		if err := im.File(m[1], 0o755, m[1]); err != nil {
			return err
		}
	}
	return nil
}

// WriteTo writes the archive.
func (im *Image) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: bufio.NewWriterSize(w, 1<<20)}
	for i, e := range im.entries {
		data := e.data
		if data == nil && e.source != "" {
			var err error
			if data, err = os.ReadFile(e.source); err != nil {
				return cw.n, fmt.Errorf("initramfs: %w", err)
			}
		}
		if err := writeEntry(cw, uint32(i+1), e.mode, e.name, data); err != nil {
			return cw.n, err
		}
	}
	if err := writeEntry(cw, 0, 0, "TRAILER!!!", nil); err != nil {
		return cw.n, err
	}
	return cw.n, cw.w.(*bufio.Writer).Flush()
}

// writeEntry writes one newc record: a 110-byte ASCII header, the NUL-terminated name and the
// data, each padded to four bytes.
func writeEntry(w io.Writer, ino, mode uint32, name string, data []byte) error {
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	rec := make([]byte, 0, len(hdr)+len(name)+4)
	rec = append(rec, hdr...)
	rec = append(rec, name...)
	rec = append(rec, 0)
	rec = pad4(rec)
	if _, err := w.Write(rec); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err := w.Write(make([]byte, (4-len(data)%4)%4))
	return err
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
