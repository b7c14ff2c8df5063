package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// director is one `sluice run` with its own keepalived.conf, in its own namespace.
type director struct {
	name     string
	ns       *netns.NS
	addr     netip.Addr
	priority int
	conf     string // path of its keepalived.conf
	bin      string // the sluice binary

	env *netns.Env
	log *lab.LogTail

	mu   sync.Mutex  // the watcher reads proc while the script restarts the daemon
	proc *netns.Proc // the current process; nil before the first start
}

// start runs `sluice run -f CONF -n -l` in the director's namespace.
func (d *director) start() error {
	cmd := d.ns.Command(d.bin, "run", "-f", d.conf, "-n", "-l")
	cmd.Stdout, cmd.Stderr = d.log, d.log
	cmd.WaitDelay = 5 * time.Second // never hang on a pipe a stray child holds open
	// Its own process group: Ctrl-C in the terminal reaches the demo only, which then stops the
	// daemons itself, in order, and removes what they leave.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	proc, err := d.env.Start(cmd)
	if err != nil {
		return fmt.Errorf("start sluice on %s: %w", d.name, err)
	}
	d.mu.Lock()
	d.proc = proc
	d.mu.Unlock()
	return nil
}

// process returns the current sluice process, nil before the first start.
func (d *director) process() *netns.Proc {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.proc
}

// running reports whether the director's sluice process is alive.
func (d *director) running() bool {
	p := d.process()
	if p == nil {
		return false
	}
	select {
	case <-p.Done():
		return false
	default:
		return true
	}
}

// kill ends sluice with SIGKILL, as a crash or a power cut would: it sends no last advert and
// removes nothing, so its VIP address stays on its interface and its control socket stays in
// /run/sluice (the next start replaces it).
func (d *director) kill() error {
	p := d.process()
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill sluice on %s: %w", d.name, err)
	}
	<-p.Done()
	return nil
}

// signal sends sig to the running daemon.
func (d *director) signal(sig os.Signal) error {
	if !d.running() {
		return fmt.Errorf("signal sluice on %s: not running", d.name)
	}
	if err := d.process().Cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal sluice on %s: %w", d.name, err)
	}
	return nil
}

// stop ends sluice with SIGTERM, as systemd would: VRRP sends priority 0, the VIP and the XDP
// program are removed, and the exit status is 0.
func (d *director) stop() error {
	if !d.running() {
		return nil
	}
	if err := d.process().Stop(netns.StopGrace); err != nil {
		return fmt.Errorf("stop sluice on %s: %w", d.name, err)
	}
	return nil
}

// socket is the daemon's control socket: /run/sluice/NAMESPACE.sock. A unix socket path works
// from any network namespace, so the demo asks the daemons directly, as `sluice status` would.
func (d *director) socket() string { return control.SocketPath(d.ns.Name) }

// status asks the daemon for its state over the control socket.
func (d *director) status(ctx context.Context) (*control.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	resp, err := control.Call(ctx, d.socket(), control.Request{Command: control.CmdStatus})
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("%s: status response without a status", d.name)
	}
	return resp.Status, nil
}

// sluice runs a sluice subcommand (plan, reload, status...) in the director's namespace, as an
// operator logged in on that director would.
func (d *director) sluice(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := d.ns.Command(d.bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	out, err := cmd.CombinedOutput()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		return string(out), fmt.Errorf("sluice %s on %s: %w: %s", strings.Join(args, " "), d.name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// confTemplate is the keepalived.conf each director runs: one VRRP instance holding the VIP and
// one DR virtual server over the real servers, checked with HTTP_GET.
var confTemplate = template.Must(template.New("keepalived.conf").Parse(`# {{.Name}}: written by the Sluice demo (test/demo)
global_defs {
    router_id {{.Name}}
}

vrrp_instance VI_1 {
    state BACKUP             # both start as BACKUP; the higher priority wins the election
    interface {{.Iface}}
    virtual_router_id 51
    version 3
    priority {{.Priority}}
    advert_int 0.2           # VRRPv3 centiseconds: a silent MASTER is replaced within about 0.8 s
    virtual_ipaddress {
        {{.VIP}}/32
    }
}

virtual_server {{.VIP}} {{.Port}} {
    delay_loop {{.DelayLoop}}             # check every real server every second
    lb_algo wrr
    lb_kind DR
    protocol TCP
{{range .RealServers}}
    real_server {{.Addr}} {{$.Port}} {   # {{.Name}}
        weight {{.Weight}}
        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout {{$.ConnectTimeout}}
            retry 0          # one failed check takes the server out
        }
    }
{{- end}}
}
`))

// confData fills confTemplate.
type confData struct {
	Name                      string
	Priority                  int
	Iface                     string
	VIP                       netip.Addr
	Port                      int
	DelayLoop, ConnectTimeout int // seconds
	RealServers               []confServer
}

type confServer struct {
	Name   string
	Addr   netip.Addr
	Weight int
}

// writeConf writes d's keepalived.conf with the given weight per real server name (1 when
// absent) to path.
func (d *director) writeConf(path string, servers []*lab.RealServer, weights map[string]int) error {
	data := confData{
		Name:           d.name,
		Priority:       d.priority,
		Iface:          lab.Iface,
		VIP:            lab.VIP,
		Port:           lab.Port,
		DelayLoop:      int(lab.DelayLoop / time.Second),
		ConnectTimeout: int(lab.ConnectTimeout / time.Second),
	}
	for _, rs := range servers {
		w, ok := weights[rs.Name]
		if !ok {
			w = 1
		}
		data.RealServers = append(data.RealServers, confServer{Name: rs.Name, Addr: rs.Addr, Weight: w})
	}
	var b strings.Builder
	if err := confTemplate.Execute(&b, data); err != nil {
		return fmt.Errorf("write %s's keepalived.conf: %w", d.name, err)
	}
	// Written beside the target and renamed over it, so a daemon never reads half a file.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".conf-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
