package e2e

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
	"github.com/sluice-lb/sluice/vrrp"
)

// failoverSlack is what the issue allows beyond the RFC timers, measured on the wire.
const failoverSlack = 50 * time.Millisecond

// speaker is a VRRP daemon on a lab.Segment: `sluice run -P` or keepalived -P.
type speaker struct {
	keepalived bool
	ns         *netns.NS
	src        string // its advert source address
	conf       string // keepalived.conf text
	proc       *netns.Proc
	log        *lab.LogTail
	dir        string // the current run's files
}

func (s *speaker) String() string {
	if s.keepalived {
		return "keepalived"
	}
	return "sluice"
}

func (s *speaker) start(t *testing.T, env *netns.Env) {
	t.Helper()
	s.dir = t.TempDir()
	conf := filepath.Join(s.dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(s.conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if s.keepalived {
		// -R: a killed VRRP child is not respawned, so SIGKILL means a dead node.
		cmd = s.ns.Command(keepalivedBin(t), "-n", "-l", "-D", "-P", "-R", "-f", conf,
			"-p", filepath.Join(s.dir, "keepalived.pid"), "-r", filepath.Join(s.dir, "vrrp.pid"))
	} else {
		cmd = s.ns.Command(sluiceBin, "run", "-P", "-f", conf, "-n", "-l")
	}
	s.log = &lab.LogTail{}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.WaitDelay = 5 * time.Second
	var err error
	if s.proc, err = env.Start(cmd); err != nil {
		t.Fatal(err)
	}
}

// term stops the daemon with SIGTERM: a master sends priority 0.
func (s *speaker) term(t *testing.T) {
	t.Helper()
	if err := s.proc.Stop(5 * time.Second); err != nil {
		t.Errorf("stop %s: %v", s, err)
	}
}

// kill SIGKILLs the process that sends adverts (keepalived's VRRP child), without release.
func (s *speaker) kill(t *testing.T) {
	t.Helper()
	if !s.keepalived {
		s.proc.Cmd.Process.Signal(syscall.SIGKILL)
		<-s.proc.Done()
		t.Cleanup(func() { os.Remove(filepath.Join(control.DefaultDir, s.ns.Name+".sock")) })
		return
	}
	b, err := os.ReadFile(filepath.Join(s.dir, "vrrp.pid"))
	if err != nil {
		t.Fatalf("keepalived's VRRP child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("keepalived's VRRP child: bad pid file %q", b)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill keepalived's VRRP child %d: %v", pid, err)
	}
	// The parent, not respawning (-R), exits on its own or on SIGTERM; either way the child
	// sent nothing more.
	s.proc.Stop(5 * time.Second)
}

func keepalivedBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		netns.SkipPrivileged(t, "keepalived is not installed (apt-get install keepalived)")
	}
	return bin
}

// advertGap finds, in adverts, the first advert from to after the advert from `from` chosen by
// pick (which gets them in order and returns the index of the one to measure from), and
// returns the time between the two.
func advertGap(t *testing.T, get func() []lab.CapturedAdvert, from, to string, pick func([]lab.CapturedAdvert) int) time.Duration {
	t.Helper()
	// The new master adds its VIPs just before it sends its first advert, and the capture
	// reads frames in the background: give that advert a moment to be read.
	deadline := time.Now().Add(2 * time.Second)
	for {
		adverts := get()
		var fromAds []lab.CapturedAdvert
		for _, a := range adverts {
			if a.Src.String() == from {
				fromAds = append(fromAds, a)
			}
		}
		i := pick(fromAds)
		if i < 0 {
			t.Fatalf("no advert from %s to measure from among %d captured", from, len(adverts))
		}
		at := fromAds[i].At
		for _, a := range adverts {
			if a.Src.String() == to && a.At.After(at) {
				return a.At.Sub(at)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no advert from %s after %s's at %v", to, from, at)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVRRPTimedFailover measures failover on the wire between Sluice and Debian's keepalived,
// each way round, multicast and unicast: AF_PACKET captures on the directors' switch ports
// timestamp every advert (SO_TIMESTAMPNS). A master stopped with SIGTERM sends priority 0, and the backup's first
// advert must follow within its Skew_Time + 50 ms; a master killed with SIGKILL just falls
// silent, and the backup's first advert must follow its last one within the backup's
// Master_Down_Interval + 50 ms.
func TestVRRPTimedFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	cases := []struct {
		name     string
		version  int
		interval time.Duration
		auth     string
		unicast  bool
	}{
		{"v3 multicast", 3, 200 * time.Millisecond, "", false},
		{"v3 unicast", 3, 200 * time.Millisecond, "", true},
		{"v2 PASS multicast", 2, time.Second, "secret123", false},
	}
	const masterPrio, backupPrio = 200, 100
	for _, c := range cases {
		for _, kaMaster := range []bool{false, true} {
			name := c.name + "/sluice master, keepalived backup"
			if kaMaster {
				name = c.name + "/keepalived master, sluice backup"
			}
			t.Run(name, func(t *testing.T) {
				keepalivedBin(t)
				env := netns.ForTest(t)
				seg, err := lab.BuildSegment(env, 2)
				if err != nil {
					t.Fatal(err)
				}
				// Each director's switch port sees what it sends, unicast included.
				var capts []*lab.AdvertCapture
				for i := range seg.Directors {
					capt, err := lab.CaptureAdverts(seg.Switch.NS, seg.DirectorPort(i))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { capt.Close() })
					capts = append(capts, capt)
				}
				adverts := func() []lab.CapturedAdvert {
					var all []lab.CapturedAdvert
					for _, c := range capts {
						if err := c.Err(); err != nil {
							t.Errorf("capture: %v", err)
						}
						all = append(all, c.Adverts()...)
					}
					slices.SortStableFunc(all, func(a, b lab.CapturedAdvert) int { return a.At.Compare(b.At) })
					return all
				}
				interval := c.interval.Seconds()
				mNode := lab.VRRPNode{State: "MASTER", Priority: masterPrio}
				bNode := lab.VRRPNode{State: "BACKUP", Priority: backupPrio}
				if c.unicast {
					mNode.UnicastSrc, mNode.UnicastPeers = seg.DirectorIP(0), []netip.Addr{seg.DirectorIP(1)}
					bNode.UnicastSrc, bNode.UnicastPeers = seg.DirectorIP(1), []netip.Addr{seg.DirectorIP(0)}
				}
				m := &speaker{keepalived: kaMaster, ns: seg.Directors[0], src: seg.DirectorIP(0).String(),
					conf: lab.VRRPConf(mNode, c.version, interval, c.auth)}
				b := &speaker{keepalived: !kaMaster, ns: seg.Directors[1], src: seg.DirectorIP(1).String(),
					conf: lab.VRRPConf(bNode, c.version, interval, c.auth)}
				t.Cleanup(func() {
					for _, s := range []*speaker{m, b} {
						if s.proc != nil {
							s.proc.Stop(5 * time.Second)
						}
						if t.Failed() && s.log != nil {
							for _, line := range s.log.Since(0) {
								t.Logf("%s: %s", s, line)
							}
						}
					}
				})
				masterDown := vrrp.MasterDownInterval(c.version, backupPrio, c.interval)
				skew := vrrp.SkewTime(c.version, backupPrio, c.interval)
				startup := vrrp.MasterDownInterval(c.version, masterPrio, c.interval) + 3*time.Second

				m.start(t, env)
				if err := seg.WaitHolder(0, []int{0}, startup); err != nil {
					t.Fatalf("%s master alone: %v", m, err)
				}
				b.start(t, env)
				// The backup must accept the master's adverts for longer than its
				// Master_Down_Interval.
				time.Sleep(masterDown + 500*time.Millisecond)
				if err := seg.WaitHolder(0, []int{0, 1}, 0); err != nil {
					t.Fatalf("%s master with %s backup: %v", m, b, err)
				}

				// 1. SIGTERM: priority 0, the backup takes over after its Skew_Time.
				m.term(t)
				if err := seg.WaitHolder(1, []int{1}, 2*masterDown); err != nil {
					t.Fatalf("after %s's release: %v", m, err)
				}
				gap := advertGap(t, adverts, m.src, b.src, func(ads []lab.CapturedAdvert) int {
					for i, a := range ads {
						if a.Packet.Priority == vrrp.PriorityRelease {
							return i
						}
					}
					return -1
				})
				t.Logf("release: %s's first advert %v after %s's priority 0 (Skew_Time %v)", b, gap, m, skew)
				if gap > skew+failoverSlack {
					t.Errorf("release: %s took over %v after %s's priority 0, want at most Skew_Time %v + %v",
						b, gap, m, skew, failoverSlack)
				}
				if gap < skew-failoverSlack {
					t.Errorf("release: %s took over %v after %s's priority 0, before Skew_Time %v", b, gap, m, skew)
				}

				// 2. The master comes back and preempts.
				m.start(t, env)
				if err := seg.WaitHolder(0, []int{0, 1}, startup); err != nil {
					t.Fatalf("%s restarted: %v", m, err)
				}
				time.Sleep(masterDown + 500*time.Millisecond)
				if err := seg.WaitHolder(0, []int{0, 1}, 0); err != nil {
					t.Fatalf("%s restarted, later: %v", m, err)
				}

				// 3. SIGKILL: silence; the backup takes over after its Master_Down_Interval.
				m.kill(t)
				if err := seg.WaitHolder(1, []int{1}, 2*masterDown+time.Second); err != nil {
					t.Fatalf("after %s was killed: %v", m, err)
				}
				gap = advertGap(t, adverts, m.src, b.src, func(ads []lab.CapturedAdvert) int {
					return len(ads) - 1
				})
				t.Logf("kill: %s's first advert %v after %s's last (Master_Down_Interval %v)", b, gap, m, masterDown)
				if gap > masterDown+failoverSlack {
					t.Errorf("kill: %s took over %v after %s's last advert, want at most Master_Down_Interval %v + %v",
						b, gap, m, masterDown, failoverSlack)
				}
				if gap < masterDown-failoverSlack {
					t.Errorf("kill: %s took over %v after %s's last advert, before Master_Down_Interval %v",
						b, gap, m, masterDown)
				}
			})
		}
	}
}
