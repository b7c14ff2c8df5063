package netns

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Veth creates a veth pair with end aName in a and end bName in b, and sets both up.
// Deleting either namespace deletes the pair.
func (e *Env) Veth(a *NS, aName string, b *NS, bName string) error {
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(b.handle),
	}
	// Created from inside a, so neither name ever exists in the caller's namespace.
	if err := a.nl.LinkAdd(v); err != nil {
		return fmt.Errorf("create veth %s/%s - %s/%s: %w", a.Short, aName, b.Short, bName, err)
	}
	if err := a.LinkUp(aName); err != nil {
		return err
	}
	return b.LinkUp(bName)
}

// AddBridge creates bridge name in the namespace and sets it up.
func (n *NS) AddBridge(name string) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := n.nl.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s in %s: %w", name, n.Short, err)
	}
	return n.LinkUp(name)
}

// SetMaster enslaves interface ifName to bridge in the namespace.
func (n *NS) SetMaster(ifName, bridge string) error {
	l, err := n.Link(ifName)
	if err != nil {
		return err
	}
	br, err := n.Link(bridge)
	if err != nil {
		return err
	}
	if err := n.nl.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("enslave %s to %s in %s: %w", ifName, bridge, n.Short, err)
	}
	return nil
}

// Switch is a bridge in a namespace of its own, standing in for the L2 segment hosts share.
type Switch struct {
	NS     *NS
	Bridge string
}

// NewSwitch creates namespace short holding bridge "br0".
func (e *Env) NewSwitch(short string) (*Switch, error) {
	ns, err := e.NewNS(short)
	if err != nil {
		return nil, err
	}
	if err := ns.AddBridge("br0"); err != nil {
		return nil, err
	}
	return &Switch{NS: ns, Bridge: "br0"}, nil
}

// Plug connects n to the switch with a veth: ifName in n, and a bridge port in the switch
// namespace named after n (n.Short cut to 15 bytes), which it returns.
func (s *Switch) Plug(n *NS, ifName string) (port string, err error) {
	port = n.Short
	if len(port) > 15 {
		port = port[:15]
	}
	if err := s.NS.env.Veth(n, ifName, s.NS, port); err != nil {
		return "", err
	}
	if err := s.NS.SetMaster(port, s.Bridge); err != nil {
		return "", err
	}
	return port, nil
}

// Link returns interface ifName of the namespace.
func (n *NS) Link(ifName string) (netlink.Link, error) {
	l, err := n.nl.LinkByName(ifName)
	if err != nil {
		return nil, fmt.Errorf("find %s in %s: %w", ifName, n.Short, err)
	}
	return l, nil
}

// LinkUp sets interface ifName up.
func (n *NS) LinkUp(ifName string) error {
	l, err := n.Link(ifName)
	if err != nil {
		return err
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up in %s: %w", ifName, n.Short, err)
	}
	return nil
}

// AddAddr adds prefix (e.g. "10.111.0.2/24", or "10.111.0.100/32" on "lo") to interface ifName.
func (n *NS) AddAddr(ifName string, prefix netip.Prefix) error {
	l, err := n.Link(ifName)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(prefix.String())
	if err != nil {
		return fmt.Errorf("parse address %s: %w", prefix, err)
	}
	if prefix.Addr().Is6() {
		// A test network holds no duplicate; duplicate address detection would leave the
		// address tentative, unusable, for a second or so after the link comes up, and
		// failed the first health checks of IPv6 tests now and then.
		a.Flags |= unix.IFA_F_NODAD
	}
	if err := n.nl.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s in %s: %w", prefix, ifName, n.Short, err)
	}
	return nil
}

// HardwareAddr returns the MAC address of interface ifName.
func (n *NS) HardwareAddr(ifName string) (string, error) {
	l, err := n.Link(ifName)
	if err != nil {
		return "", err
	}
	return l.Attrs().HardwareAddr.String(), nil
}

// Sysctl sets a sysctl of the namespace, named as sysctl(8) does ("net.ipv4.conf.all.arp_ignore")
// or as a path under /proc/sys ("net/ipv4/conf/eth0/arp_ignore"; needed for names with dots).
func (n *NS) Sysctl(key, value string) error {
	p := key
	if !strings.Contains(p, "/") {
		p = strings.ReplaceAll(p, ".", "/")
	}
	p = filepath.Join("/proc/sys", filepath.Clean("/"+p))
	// /proc/sys/net shows the namespace of the thread that opens it.
	err := n.Do(func() error { return os.WriteFile(p, []byte(value), 0o644) })
	if err != nil {
		return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, n.Short, err)
	}
	return nil
}

// AttachXDPPass attaches a program that passes every packet to interface ifName, detached at
// Close. A veth delivers frames that its peer sent with XDP_TX or a redirect only when it runs
// an XDP program of its own, so the far end of a forwarding veth needs one.
func (n *NS) AttachXDPPass(ifName string) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xdp_pass",
		Type: ebpf.XDP,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 2), // XDP_PASS
			asm.Return(),
		},
		License: "GPL",
	})
	if err != nil {
		return fmt.Errorf("load xdp_pass: %w", err)
	}
	var l link.Link
	err = n.Do(func() error {
		iface, err := n.Link(ifName)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface.Attrs().Index})
		return err
	})
	if err != nil {
		prog.Close()
		return fmt.Errorf("attach xdp_pass to %s in %s: %w", ifName, n.Short, err)
	}
	n.env.Defer(func() error { return errors.Join(l.Close(), prog.Close()) })
	return nil
}

// XDP reports the XDP program attached to interface ifName; nil means none.
func (n *NS) XDP(ifName string) (*netlink.LinkXdp, error) {
	l, err := n.Link(ifName)
	if err != nil {
		return nil, err
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return nil, nil
	}
	return x, nil
}

// XDPModeName names an IFLA_XDP_ATTACHED value as ip(8) does.
func XDPModeName(mode uint32) string {
	switch mode {
	case 0:
		return "none"
	case 1:
		return "native (xdp)"
	case 2:
		return "generic (xdpgeneric)"
	case 3:
		return "offload (xdpoffload)"
	case 4:
		return "multi"
	}
	return fmt.Sprintf("mode(%d)", mode)
}

// TxOffloadOff turns off transmit checksum offload on interface ifName. A veth hands partially
// checksummed packets to its peer; once XDP rewrites and forwards them, they arrive with bad
// checksums, so traffic sources whose packets go through XDP must checksum in software.
func (n *NS) TxOffloadOff(ifName string) error {
	out, err := n.Command("ethtool", "-K", ifName, "tx", "off").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ethtool -K %s tx off in %s: %w: %s", ifName, n.Short, err, strings.TrimSpace(string(out)))
	}
	return nil
}
