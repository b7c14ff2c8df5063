package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/netns"
)

// TestVRRPTrackBFD runs two real directors with a BFD session between them (each a
// bfd_instance toward the other). Director 0 (priority 150) tracks its session with track_bfd
// weight -100. While the session is Up it is MASTER at 150; when director 1 stops answering BFD
// (an nftables rule drops it there), the session goes Down, director 0's effective priority
// falls to 50 and director 1 (100) takes the VIP; when BFD flows again, director 0 preempts back.
func TestVRRPTrackBFD(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	env := netns.ForTest(t)
	l, err := lab.BuildVRRP(env, 3)
	if err != nil {
		t.Fatal(err)
	}
	bfd := func(name string, peer, self fmt.Stringer) string {
		return fmt.Sprintf("bfd_instance %s {\n    neighbor_ip %s\n    source_ip %s\n    min_rx 100\n    min_tx 100\n    multiplier 3\n}\n\n", name, peer, self)
	}
	confA := bfd("B", lab.SecondDirectorIP, lab.DirectorIP) + strings.Replace(l.KeepalivedConfVRRP(150),
		"    priority 150\n", "    priority 150\n    track_bfd {\n        B weight -100\n    }\n", 1)
	confB := bfd("A", lab.DirectorIP, lab.SecondDirectorIP) + l.KeepalivedConfVRRP(100)
	ds := startDirectors(t, env, l, t.TempDir(), [2]string{confA, confB})
	effective := func(step string, prio int) {
		t.Helper()
		ds[0].waitTrackInstance(t, "VI_1", step, 10*time.Second, func(v control.VRRPInstance) bool {
			return v.EffectivePriority == prio
		})
	}

	// The session comes Up (it starts Down, at 50): director 0 is MASTER at 150.
	effective("BFD up", 150)
	if err := l.WaitHolder(0, 5*time.Second); err != nil {
		t.Fatalf("director 0 with its BFD session up: %v", err)
	}

	// Director 1 drops BFD: the session goes Down within its detection time (3 x 100 ms).
	drop := "table inet bfdtest {\n chain in {\n  type filter hook input priority 0; policy accept;\n  udp dport 3784 drop\n }\n}\n"
	cmd := l.Directors[1].Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(drop)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	effective("BFD down", 50)
	if err := l.WaitHolder(1, 5*time.Second); err != nil {
		t.Fatalf("takeover by director 1 after director 0's BFD session went down: %v", err)
	}

	// BFD flows again: director 0 is back at 150 and preempts.
	if out, err := l.Directors[1].Command("nft", "delete", "table", "inet", "bfdtest").CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	effective("BFD up again", 150)
	if err := l.WaitHolder(0, 5*time.Second); err != nil {
		t.Fatalf("preemption by director 0 after its BFD session came back: %v", err)
	}
}
