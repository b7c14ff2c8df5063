package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// segDirector is one `sluice run -P` on a lab.Segment.
type segDirector struct {
	ns   *netns.NS
	conf string
	proc *netns.Proc
	log  *lab.LogTail
}

func (d *segDirector) start(t *testing.T, env *netns.Env) {
	t.Helper()
	d.log = &lab.LogTail{}
	cmd := d.ns.Command(sluiceBin, "run", "-P", "-f", d.conf, "-n", "-l")
	cmd.Stdout, cmd.Stderr = d.log, d.log
	cmd.WaitDelay = 5 * time.Second
	var err error
	if d.proc, err = env.Start(cmd); err != nil {
		t.Fatal(err)
	}
}

// kill SIGKILLs the daemon: no priority 0, its VIP stays on its interface, as with keepalived.
func (d *segDirector) kill(t *testing.T) {
	t.Helper()
	if err := d.proc.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", d.ns, err)
	}
	<-d.proc.Done()
	// A killed daemon cannot remove its control socket (the next one to start replaces it).
	t.Cleanup(func() { os.Remove(filepath.Join(control.DefaultDir, d.ns.Name+".sock")) })
}

// matrixStep kills or restarts one director, then the VIP must be held by want.
type matrixStep struct {
	kill, restart int // director index, or -1
	want          int
}

func kill(i, want int) matrixStep    { return matrixStep{kill: i, restart: -1, want: want} }
func restart(i, want int) matrixStep { return matrixStep{kill: -1, restart: i, want: want} }

// TestVRRPDeploymentMatrix runs the four classic keepalived deployments with two real
// `sluice run -P` directors on one L2 segment (VRRPv3, advert_int 0.2: Master_Down_Interval
// about 0.8 s). After the election and after every SIGKILL and restart it checks that exactly
// one live director holds the VIP (a killed one keeps it on its interface, as a killed
// keepalived does, and removes it when restarted as BACKUP) and that the client's ARP entry for
// the VIP, after it sends traffic, points at the holder's MAC.
func TestVRRPDeploymentMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	const advertInt = 0.2
	// Long enough for a restarted backup to have heard the master for several
	// Master_Down_Intervals, so a wrong takeover would have happened.
	const settle = 2 * time.Second
	cases := []struct {
		name  string
		nodes [2]lab.VRRPNode
		// firstAlone starts director 0 and waits for it to be master before starting 1.
		firstAlone bool
		elected    int
		steps      []matrixStep
	}{
		{
			name:    "both MASTER, different priorities",
			nodes:   [2]lab.VRRPNode{{State: "MASTER", Priority: 150}, {State: "MASTER", Priority: 100}},
			elected: 0,
			steps:   []matrixStep{kill(0, 1), restart(0, 0), kill(1, 0), restart(1, 0)},
		},
		{
			name:    "MASTER above BACKUP",
			nodes:   [2]lab.VRRPNode{{State: "MASTER", Priority: 150}, {State: "BACKUP", Priority: 100}},
			elected: 0,
			steps:   []matrixStep{kill(0, 1), restart(0, 0)},
		},
		{
			// keepalived 2.x: `state MASTER` does not keep a lower priority master; the
			// higher-priority BACKUP wins and preempts back after a restart.
			name:    "MASTER with the lower priority",
			nodes:   [2]lab.VRRPNode{{State: "MASTER", Priority: 100}, {State: "BACKUP", Priority: 150}},
			elected: 1,
			steps:   []matrixStep{kill(1, 0), restart(1, 1)},
		},
		{
			// The first started wins although its priority is lower; the higher-priority node,
			// recovered, does not take the VIP back.
			name:       "both BACKUP nopreempt",
			nodes:      [2]lab.VRRPNode{{State: "BACKUP", Priority: 100, NoPreempt: true}, {State: "BACKUP", Priority: 150, NoPreempt: true}},
			firstAlone: true,
			elected:    0,
			steps:      []matrixStep{kill(0, 1), restart(0, 1), kill(1, 0), restart(1, 0)},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := netns.ForTest(t)
			seg, err := lab.BuildSegment(env, 2)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			ds := make([]*segDirector, 2)
			for i, n := range c.nodes {
				ds[i] = &segDirector{ns: seg.Directors[i], conf: filepath.Join(dir, []string{"a.conf", "b.conf"}[i])}
				if err := os.WriteFile(ds[i].conf, []byte(lab.VRRPConf(n, 3, advertInt, "")), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() {
				for i, d := range ds {
					if d.proc != nil {
						d.proc.Stop(5 * time.Second)
					}
					if t.Failed() {
						for _, line := range d.log.Since(0) {
							t.Logf("director %d: %s", i, line)
						}
					}
				}
			})
			alive := []int{0, 1}
			ds[0].start(t, env)
			if c.firstAlone {
				if err := seg.WaitHolder(0, []int{0}, 5*time.Second); err != nil {
					t.Fatalf("director 0 alone: %v", err)
				}
			}
			ds[1].start(t, env)
			if err := seg.WaitHolder(c.elected, alive, 5*time.Second); err != nil {
				t.Fatalf("election: %v", err)
			}
			time.Sleep(settle)
			if err := seg.WaitHolder(c.elected, alive, 0); err != nil {
				t.Fatalf("election, %v later: %v", settle, err)
			}
			for _, s := range c.steps {
				var what string
				if s.kill >= 0 {
					what = "kill director " + string(rune('0'+s.kill))
					ds[s.kill].kill(t)
					alive = slices.DeleteFunc(alive, func(i int) bool { return i == s.kill })
				} else {
					what = "restart director " + string(rune('0'+s.restart))
					ds[s.restart].start(t, env)
					alive = append(alive, s.restart)
					slices.Sort(alive)
				}
				if err := seg.WaitHolder(s.want, alive, 5*time.Second); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if s.restart >= 0 {
					// A restarted node that wrongly takes over (or flaps) does so within
					// Master_Down_Interval; the holder must not change.
					time.Sleep(settle)
					if err := seg.WaitHolder(s.want, alive, 0); err != nil {
						t.Fatalf("%s, %v later: %v", what, settle, err)
					}
				}
				t.Logf("%s: director %d holds the VIP", what, s.want)
			}
		})
	}
}
