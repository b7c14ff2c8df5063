package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/director"
)

// Kernel pktgen (/proc/net/pktgen) as the alternative generator. pktgen builds UDP datagrams
// only, so it drives the UDP scenarios; the TCP ones keep the live-frames generator. Each CPU
// of a scenario's core set runs the kernel thread kpktgend_<cpu> with one pktgen device on the
// path's veth (gen0@<cpu>), sending on the veth queue of its CPU as the live-frames generator
// does.

// Generator names (Options.Generator, Result.Generator).
const (
	GeneratorLiveFrames = "live-frames"
	GeneratorPktgen     = "pktgen"
	GeneratorAuto       = "auto"
)

// pktgenMaxPorts is how many established flows pktgen can send: one source address, and a
// source port range from portBase, which are the live-frames generator's first 32768 flows
// (flowSource), so the warm-up establishes exactly the flows pktgen then sends.
const pktgenMaxPorts = 1 << portBits

// pktgenRate bounds a pktgen device's count: no veth takes more packets per second per CPU.
const pktgenRate = 50e6

// pktgenDev is the configuration of one pktgen device: one CPU's share of a scenario.
type pktgenDev struct {
	ifName string
	cpu    int
	count  uint64 // packets before it stops on its own
	dstMAC net.HardwareAddr
	src    netip.Addr // source address (IPv4: the lowest of the range when random)
	dst    netip.Addr
	dport  uint16
	// sportMin and sportMax are the source port range, max excluded (pktgen wraps at it).
	sportMin, sportMax uint16
	// random draws the source port (and the IPv4 source address, from srcBase/16) at random
	// for every packet: new flows (a flood) rather than a cycle over established ones.
	random bool
}

// name is the pktgen device's name: the interface and the thread it runs on.
func (d pktgenDev) name() string { return fmt.Sprintf("%s@%d", d.ifName, d.cpu) }

// pktSize is pktgen's pkt_size for the family: the live-frames generator's UDP frame sizes
// (60 bytes over IPv4; over IPv6 pktgen's own 16-byte header makes it 78, not 74).
func (d pktgenDev) pktSize() int {
	if d.dst.Is6() {
		return 14 + 40 + 8 + 16
	}
	return 60
}

// commands are the lines written to the device's file, one write each.
func (d pktgenDev) commands() []string {
	c := []string{
		fmt.Sprintf("count %d", d.count),
		// A veth cannot send a shared skb (no IFF_TX_SKB_SHARING): a fresh skb per packet.
		"clone_skb 0",
		"burst 1",
		"delay 0",
		fmt.Sprintf("pkt_size %d", d.pktSize()),
		fmt.Sprintf("queue_map_min %d", d.cpu),
		fmt.Sprintf("queue_map_max %d", d.cpu),
		"dst_mac " + d.dstMAC.String(),
		fmt.Sprintf("udp_dst_min %d", d.dport),
		fmt.Sprintf("udp_dst_max %d", d.dport),
		fmt.Sprintf("udp_src_min %d", d.sportMin),
		fmt.Sprintf("udp_src_max %d", d.sportMax),
	}
	if d.dst.Is6() {
		c = append(c, "dst6 "+d.dst.String(), "src6 "+d.src.String())
	} else {
		srcMax := d.src
		if d.random {
			a := d.src.As4()
			a[2], a[3] = 0xff, 0xff
			srcMax = netip.AddrFrom4(a)
		}
		c = append(c, "dst_min "+d.dst.String(), "dst_max "+d.dst.String(),
			"src_min "+d.src.String(), "src_max "+srcMax.String())
	}
	// Checksummed in software (the generator's veth has transmit offload off), as the
	// live-frames generator's frames are: XDP forwarding keeps whatever checksum it finds.
	c = append(c, "flag UDPCSUM", "flag NO_TIMESTAMP")
	if d.random {
		c = append(c, "flag UDPSRC_RND")
		if !d.dst.Is6() {
			c = append(c, "flag IPSRC_RND")
		}
	}
	return c
}

// pktgenDevs splits scenario sc over cpus as pktgen devices on path p for dur: each CPU sends
// its own slice of the established flows' source ports (as a NIC's RSS keeps a flow on one
// CPU), or random new flows for a flood.
func pktgenDevs(sc scenario, p path, cpus []int, dur time.Duration) ([]pktgenDev, error) {
	if sc.l4() != director.UDP {
		return nil, fmt.Errorf("pktgen sends UDP only, scenario %s is %s", sc.name, sc.l4())
	}
	if sc.mode == genMixed {
		return nil, fmt.Errorf("pktgen cannot send mixed traffic")
	}
	if sc.mode == genEstablished && (sc.flows == 0 || sc.flows > pktgenMaxPorts) {
		return nil, fmt.Errorf("pktgen sends 1 to %d established flows, not %d", pktgenMaxPorts, sc.flows)
	}
	if sc.mode == genEstablished && int(sc.flows) < len(cpus) {
		return nil, fmt.Errorf("%d flows cannot be shared by %d CPUs", sc.flows, len(cpus))
	}
	fam := sc.family()
	count := uint64(max(dur.Seconds(), 0.001) * pktgenRate)
	var devs []pktgenDev
	for i, cpu := range cpus {
		d := pktgenDev{
			ifName: p.genIf, cpu: cpu, count: count, dstMAC: p.dirMAC,
			src: fam.srcBase, dst: fam.vip, dport: vipPort,
		}
		if sc.mode == genEstablished {
			lo := uint32(i) * sc.flows / uint32(len(cpus))
			hi := uint32(i+1) * sc.flows / uint32(len(cpus))
			d.sportMin, d.sportMax = uint16(portBase+lo), uint16(portBase+hi)
		} else {
			d.sportMin, d.sportMax, d.random = portBase, 65535, true
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// pktgenUsable reports whether pktgen can drive scenario sc (UDP, not mixed, few enough
// flows); the others use the live-frames generator.
func pktgenUsable(sc scenario, cores int) bool {
	if sc.l4() != director.UDP || sc.mode == genMixed {
		return false
	}
	return sc.mode == genNew || (sc.flows <= pktgenMaxPorts && int(sc.flows) >= cores)
}

// pktgenDir is pktgen's directory for the namespace of the calling thread: /proc/net follows
// the thread group leader's namespace, /proc/thread-self/net the thread's.
const pktgenDir = "/proc/thread-self/net/pktgen"

// PktgenLoaded loads the pktgen module if it is not loaded (quietly: most kernels that lack it
// have no module either) and reports whether the kernel has pktgen.
func PktgenLoaded() bool {
	if _, err := os.Stat("/proc/net/pktgen"); err == nil {
		return true
	}
	_ = exec.Command("modprobe", "pktgen").Run()
	_, err := os.Stat("/proc/net/pktgen")
	return err == nil
}

// pktgenAvailable reports whether the generator namespace has pktgen.
func (r *rig) pktgenAvailable() bool {
	err := r.gen.Do(func() error {
		_, err := os.Stat(filepath.Join(pktgenDir, "pgctrl"))
		return err
	})
	return err == nil
}

// pktgenWrite writes one command to a pktgen file, from a thread in the generator namespace.
func pktgenWrite(file, cmd string) error {
	f, err := os.OpenFile(filepath.Join(pktgenDir, file), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pktgen: %w", err)
	}
	_, werr := f.WriteString(cmd + "\n")
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("pktgen %s: %q: %w", file, cmd, err)
	}
	return nil
}

// pktgenRemoveAll removes every device from the threads of cpus.
func (r *rig) pktgenRemoveAll(cpus []int) error {
	return r.gen.Do(func() error {
		var errs []error
		for _, cpu := range cpus {
			errs = append(errs, pktgenWrite(fmt.Sprintf("kpktgend_%d", cpu), "rem_device_all"))
		}
		return errors.Join(errs...)
	})
}

// pktgenSend configures devs, runs pktgen for at most dur and returns the packets the devices
// sent and the time it ran. The devices are removed again on every return.
func (r *rig) pktgenSend(devs []pktgenDev, dur time.Duration) (sent uint64, elapsed time.Duration, err error) {
	var cpus []int
	for _, d := range devs {
		cpus = append(cpus, d.cpu)
	}
	if err := r.pktgenRemoveAll(cpus); err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, r.pktgenRemoveAll(cpus)) }()
	err = r.gen.Do(func() error {
		for _, d := range devs {
			if err := pktgenWrite(fmt.Sprintf("kpktgend_%d", d.cpu), "add_device "+d.name()); err != nil {
				return err
			}
			for _, c := range d.commands() {
				if err := pktgenWrite(d.name(), c); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	// "start" returns when every device is done (count sent) or stopped; "stop" from another
	// thread bounds the run by dur.
	var (
		wg       sync.WaitGroup
		startErr error
	)
	done := make(chan struct{})
	start := time.Now()
	wg.Go(func() {
		defer close(done)
		startErr = r.gen.Do(func() error { return pktgenWrite("pgctrl", "start") })
	})
	timer := time.NewTimer(dur)
	select {
	case <-done:
		timer.Stop()
	case <-timer.C:
	}
	stopErr := r.gen.Do(func() error { return pktgenWrite("pgctrl", "stop") })
	wg.Wait()
	elapsed = time.Since(start)
	if err := errors.Join(startErr, stopErr); err != nil {
		return 0, elapsed, err
	}
	err = r.gen.Do(func() error {
		for _, d := range devs {
			b, err := os.ReadFile(filepath.Join(pktgenDir, d.name()))
			if err != nil {
				return fmt.Errorf("pktgen: %w", err)
			}
			n, err := pktgenSent(string(b))
			if err != nil {
				return fmt.Errorf("pktgen %s: %w", d.name(), err)
			}
			sent += n
		}
		return nil
	})
	return sent, elapsed, err
}

var pktsSoFar = regexp.MustCompile(`pkts-sofar:\s*(\d+)`)

// pktgenSent reads the packets sent from a pktgen device's file.
func pktgenSent(status string) (uint64, error) {
	m := pktsSoFar.FindStringSubmatch(status)
	if m == nil {
		return 0, fmt.Errorf("no pkts-sofar in %q", strings.TrimSpace(status[:min(len(status), 200)]))
	}
	return strconv.ParseUint(m[1], 10, 64)
}
