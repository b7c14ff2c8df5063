package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Handler answers the calls the server accepts.
type Handler interface {
	Status() Status
	// Reload re-reads the configuration; it returns the reason when the file is refused.
	Reload(ctx context.Context) error
	// Plan says what a reload to the configuration in file would change.
	Plan(file string) (PlanResult, error)
	// Explain says what happens to a packet of the flow proto src -> dst, and why.
	Explain(proto string, src, dst netip.AddrPort) (Explanation, error)
	// StatusRates is Status with per-second traffic rates; it may take a second.
	StatusRates(ctx context.Context) (Status, error)
}

// Server serves the control API on a unix socket.
type Server struct {
	ln   *net.UnixListener
	path string
	log  *slog.Logger
	// allowed decides whether a peer uid may call; root only outside tests.
	allowed func(uid uint32) bool
	wg      sync.WaitGroup
}

// connDeadline bounds a whole call, so a client that stalls cannot hold a goroutine.
const connDeadline = 10 * time.Second

// Listen creates the socket at path, in a directory made (or checked to be) owned by root and
// closed to group and others. A stale socket left by a dead daemon is replaced; a live one is
// an error, so two daemons never share a socket.
func Listen(path string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := secureDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another sluice is listening there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale control socket: %w", err)
		}
	}
	// The umask makes the socket 0600 from its creation: there is no window with wider rights.
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	return &Server{ln: ln, path: path, log: log, allowed: func(uid uint32) bool { return uid == 0 }}, nil
}

// secureDir makes dir (mode 0700) or checks that an existing one is a directory owned by us and
// not writable by group or others: a socket in a directory others control could be replaced.
func secureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create control directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("check control directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("control directory %s is not a directory", dir)
	case !ok || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("control directory %s is not owned by uid %d", dir, os.Geteuid())
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("control directory %s is writable by group or others (%v)", dir, fi.Mode().Perm())
	}
	return nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers calls until ctx is done, then closes the socket and waits for calls in flight.
func (s *Server) Serve(ctx context.Context, h Handler) error {
	go func() {
		<-ctx.Done()
		s.ln.Close()
	}()
	defer s.wg.Wait()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept control connection: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.serveConn(ctx, c, h)
		}()
	}
}

// Close stops accepting calls and removes the socket.
func (s *Server) Close() error { return s.ln.Close() }

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn, h Handler) {
	c.SetDeadline(time.Now().Add(connDeadline))
	uid, err := peerUID(c)
	if err != nil || !s.allowed(uid) {
		s.log.Warn("control connection refused", "uid", uid, "err", err)
		writeResponse(c, Response{Error: "permission denied: the control API is for root only"})
		return
	}
	line, err := readLine(c, maxRequest)
	if err != nil {
		writeResponse(c, Response{Error: "bad request: " + err.Error()})
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		writeResponse(c, Response{Error: "bad request: " + err.Error()})
		return
	}
	switch req.Command {
	case CmdStatus:
		st := h.Status()
		writeResponse(c, Response{Status: &st})
	case CmdReload:
		ctx, cancel := context.WithTimeout(ctx, connDeadline)
		defer cancel()
		if err := h.Reload(ctx); err != nil {
			writeResponse(c, Response{Error: err.Error()})
			return
		}
		writeResponse(c, Response{})
	case CmdPlan:
		p, err := h.Plan(req.File)
		if err != nil {
			writeResponse(c, Response{Error: err.Error()})
			return
		}
		writeResponse(c, Response{Plan: p.Changes, Flows: p.Flows})
	case CmdExplain:
		ex, err := h.Explain(req.Proto, req.Src, req.Dst)
		if err != nil {
			writeResponse(c, Response{Error: err.Error()})
			return
		}
		writeResponse(c, Response{Explain: &ex})
	case CmdRates:
		ctx, cancel := context.WithTimeout(ctx, connDeadline)
		defer cancel()
		st, err := h.StatusRates(ctx)
		if err != nil {
			writeResponse(c, Response{Error: err.Error()})
			return
		}
		writeResponse(c, Response{Status: &st})
	default:
		writeResponse(c, Response{Error: fmt.Sprintf("unknown command %q", req.Command)})
	}
}

func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("read peer credentials: %w", cerr)
	}
	return cred.Uid, nil
}

// readLine reads one newline-terminated line of at most max bytes.
func readLine(c net.Conn, max int) ([]byte, error) {
	r := bufio.NewReaderSize(c, 4096)
	var buf []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return nil, err
		}
		buf = append(buf, chunk...)
		if len(buf) > max {
			return nil, fmt.Errorf("message longer than %d bytes", max)
		}
		if !isPrefix {
			return buf, nil
		}
	}
}

func writeResponse(c net.Conn, r Response) {
	b, err := json.Marshal(r)
	if err != nil {
		b, _ = json.Marshal(Response{Error: "encode response: " + err.Error()})
	}
	c.Write(append(b, '\n'))
}
