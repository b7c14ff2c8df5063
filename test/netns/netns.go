// Package netns builds throwaway network topologies out of Linux network namespaces for
// privileged tests and demos: namespaces, veth pairs, bridges, addresses, sysctls, sockets
// and processes living inside a namespace, all undone by one Close.
//
// Every namespace an Env creates is named PREFIX-SHORT, where PREFIX is random per Env, so
// parallel test packages never clash, and is bind-mounted under /run/netns like `ip netns add`
// does, so `ip netns exec NAME ...` works while a test runs. It needs root (CAP_SYS_ADMIN and
// CAP_NET_ADMIN) and the ip(8) and ethtool(8) tools.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Prefix starts the name of every namespace this package creates, so leftovers of a crashed
// run can be found with `ip netns list | grep sluice-`.
const Prefix = "sluice-"

// Env owns a set of namespaces and everything created in them. Close undoes it all in the
// reverse order of creation. Its methods are safe for concurrent use.
type Env struct {
	prefix string
	ctx    context.Context // cancelled by Close: kills what Command started and nobody stopped
	cancel context.CancelFunc

	mu       sync.Mutex
	cleanups []func() error
	ns       map[string]*NS
	closed   bool
}

// New returns an empty Env with a fresh random prefix.
func New() (*Env, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("random namespace prefix: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Env{
		prefix: Prefix + hex.EncodeToString(b[:]),
		ctx:    ctx,
		cancel: cancel,
		ns:     make(map[string]*NS),
	}
	e.Defer(func() error { cancel(); return nil })
	return e, nil
}

// Prefix returns the prefix of the names of this Env's namespaces, e.g. "sluice-3fa9c2".
func (e *Env) Prefix() string { return e.prefix }

// Defer pushes fn on the cleanup stack; Close runs it before anything created earlier is undone.
func (e *Env) Defer(fn func() error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, fn)
}

// Close undoes everything in reverse order: stops processes, closes sockets and XDP links,
// deletes the namespaces (which deletes their veths). It returns every error it met and may
// be called more than once.
func (e *Env) Close() error {
	e.mu.Lock()
	fns := e.cleanups
	e.cleanups = nil
	e.closed = true
	e.mu.Unlock()

	var errs []error
	for i := len(fns) - 1; i >= 0; i-- {
		if err := fns[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// NS is one network namespace of an Env.
type NS struct {
	// Name is the full name under /run/netns, for `ip netns exec`.
	Name string
	// Short is the name the namespace was created with, e.g. "client".
	Short string

	env    *Env
	handle netns.NsHandle
	nl     *netlink.Handle
}

// NewNS creates the namespace PREFIX-short with its loopback up.
func (e *Env) NewNS(short string) (*NS, error) {
	name := e.prefix + "-" + short
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, errors.New("netns: env is closed")
	}
	if _, dup := e.ns[short]; dup {
		e.mu.Unlock()
		return nil, fmt.Errorf("create namespace %s: already exists in this env", short)
	}
	e.ns[short] = nil // reserve the name
	e.mu.Unlock()

	// ip(8) rather than netns.NewNamed: it also sets up the shared /run/netns mount that
	// `ip netns exec` relies on, exactly as an operator's namespaces would be.
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	e.Defer(func() error {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			return fmt.Errorf("delete namespace %s: %w: %s", name, err, strings.TrimSpace(string(out)))
		}
		return nil
	})

	h, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", name, err)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink socket in namespace %s: %w", name, err)
	}
	// Open handles keep a namespace alive after `ip netns delete`; close them first.
	e.Defer(func() error {
		nl.Close()
		return h.Close()
	})

	n := &NS{Name: name, Short: short, env: e, handle: h, nl: nl}
	e.mu.Lock()
	e.ns[short] = n
	e.mu.Unlock()
	if err := n.LinkUp("lo"); err != nil {
		return nil, err
	}
	return n, nil
}

// Netlink returns a netlink handle whose requests act inside the namespace, for what this
// package does not wrap. It stays owned by the Env.
func (n *NS) Netlink() *netlink.Handle { return n.nl }

func (n *NS) String() string { return n.Name }

// Do runs fn on an OS thread switched into the namespace. Sockets fn creates stay in the
// namespace for their whole life, so they may be used from any goroutine afterwards;
// goroutines fn starts do not run in the namespace.
func (n *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(n.handle); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter namespace %s: %w", n.Name, err)
	}
	restored := false
	defer func() {
		// A thread left in the wrong namespace must never run another goroutine: staying
		// locked makes the runtime end the thread when this goroutine exits.
		if restored {
			runtime.UnlockOSThread()
		}
	}()
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("return from namespace %s: %w", n.Name, err))
	}
	restored = true
	return ferr
}
