package notify

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// scriptPath is the PATH scripts run with, and where a bare program name is looked up.
const scriptPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Errors CheckScript wraps, with the reason, so callers can tell a refusal that
// enable_script_security decides (ErrInsecure) from one that always holds.
var (
	ErrScriptNotFound = errors.New("script not found")
	ErrNotExecutable  = errors.New("script not executable")
	ErrInsecure       = errors.New("script insecure")
)

// CheckScript applies keepalived's script checks to the program a script runs, as uid:gid,
// and returns the program's path (a bare name is looked up in the scripts' PATH). The
// program must exist and be executable by uid:gid. When it runs with root's privileges (uid
// or gid 0, or a set-user/group-ID root program), no part of its path, followed as written
// (directories resolved) and as resolved through symbolic links, may be writable by anyone but root: a file or
// directory not owned by root, or writable by a group other than root's or by everyone (a
// directory with the sticky bit, as /tmp, excepted) makes it ErrInsecure. keepalived refuses
// such a script only with enable_script_security, so the path is returned with ErrInsecure
// and the caller decides.
func CheckScript(program string, uid, gid uint32) (string, error) {
	path := program
	if !strings.Contains(program, "/") {
		p, err := lookPath(program, uid, gid)
		if err != nil {
			return "", err
		}
		path = p
	} else if !filepath.IsAbs(path) {
		path = filepath.Join("/", path) // scripts run in /
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrScriptNotFound, program, unwrapPath(err))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(real, &st); err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrScriptNotFound, program, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG || !executable(&st, uid, gid) {
		return "", fmt.Errorf("%w: %s by uid:gid %d:%d", ErrNotExecutable, program, uid, gid)
	}
	setRoot := st.Uid == 0 && st.Mode&syscall.S_IXUSR != 0 && st.Mode&syscall.S_ISUID != 0 ||
		st.Gid == 0 && st.Mode&syscall.S_IXGRP != 0 && st.Mode&syscall.S_ISGID != 0
	if uid != 0 && gid != 0 && !setRoot {
		return path, nil
	}
	// As keepalived: the directories resolved, the file name as written (it may be a link),
	// then the file the link leads to.
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrScriptNotFound, program, unwrapPath(err))
	}
	named := filepath.Join(dir, filepath.Base(path))
	err = securePath(named)
	if err == nil && real != named {
		err = securePath(real)
	}
	if err != nil && !errors.Is(err, ErrInsecure) {
		return "", err
	}
	return path, err
}

// securePath checks every component of an absolute path, without following symbolic links.
func securePath(path string) error {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	cur := "/"
	for i := -1; i < len(parts); i++ {
		if i >= 0 {
			cur = filepath.Join(cur, parts[i])
		}
		last := i == len(parts)-1
		var st syscall.Stat_t
		if err := syscall.Lstat(cur, &st); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrScriptNotFound, cur, err)
		}
		typ := st.Mode & syscall.S_IFMT
		if !last && typ != syscall.S_IFDIR || last && typ != syscall.S_IFREG && typ != syscall.S_IFLNK {
			return fmt.Errorf("%w: wrong file type in script path at %s", ErrNotExecutable, cur)
		}
		if st.Uid != 0 {
			return fmt.Errorf("%w: %s is owned by uid %d, not root", ErrInsecure, cur, st.Uid)
		}
		guarded := typ == syscall.S_IFDIR && st.Mode&syscall.S_ISVTX != 0
		if typ == syscall.S_IFLNK || guarded {
			continue
		}
		if st.Gid != 0 && st.Mode&syscall.S_IWGRP != 0 {
			return fmt.Errorf("%w: %s is writable by group %d", ErrInsecure, cur, st.Gid)
		}
		if st.Mode&syscall.S_IWOTH != 0 {
			return fmt.Errorf("%w: %s is writable by everyone", ErrInsecure, cur)
		}
	}
	return nil
}

// executable reports whether uid:gid may execute the file (supplementary groups are not
// considered: scripts run without them).
func executable(st *syscall.Stat_t, uid, gid uint32) bool {
	switch {
	case uid == 0:
		return st.Mode&(syscall.S_IXUSR|syscall.S_IXGRP|syscall.S_IXOTH) != 0
	case st.Uid == uid:
		return st.Mode&syscall.S_IXUSR != 0
	case st.Gid == gid:
		return st.Mode&syscall.S_IXGRP != 0
	}
	return st.Mode&syscall.S_IXOTH != 0
}

// lookPath finds a bare program name in scriptPath, as keepalived does (with a warning).
func lookPath(name string, uid, gid uint32) (string, error) {
	for _, dir := range filepath.SplitList(scriptPath) {
		p := filepath.Join(dir, name)
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG && executable(&st, uid, gid) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s is not in %s", ErrScriptNotFound, name, scriptPath)
}

// unwrapPath drops the *PathError wrapper, whose path the caller already says.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ourIDs are the uid and gid scripts run as when no credential is set (sluice is not root).
func ourIDs() (uint32, uint32) {
	return uint32(os.Geteuid()), uint32(os.Getegid())
}
