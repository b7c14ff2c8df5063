package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Dump kinds, named and numbered after keepalived's --signum: SIGUSR1 writes the data dump,
// SIGUSR2 the statistics, and signal 36 (SIGRTMIN+2) the JSON dump.
const (
	DumpData  = "data"
	DumpStats = "stats"
	DumpJSON  = "json"
)

// DumpSignals maps each dump to the signal that asks for it, as keepalived --signum reports them.
var DumpSignals = map[string]syscall.Signal{
	DumpData:  syscall.SIGUSR1,
	DumpStats: syscall.SIGUSR2,
	DumpJSON:  syscall.Signal(36),
}

// WriteStatus prints the status as `sluice status` shows it.
func WriteStatus(w io.Writer, st Status, now time.Time) {
	fmt.Fprintf(w, "sluice %s, config %s, data plane %s, up %s\n", st.Version, st.Config, st.Dataplane,
		now.Sub(st.Started).Round(time.Second))
	writeInterfaces(w, st.Interfaces)
	if st.Applied.IsZero() {
		fmt.Fprintln(w, "nothing applied yet")
	} else {
		fmt.Fprintf(w, "last applied %s ago\n", now.Sub(st.Applied).Round(time.Second))
	}
	for _, v := range st.VRRP {
		prio := ""
		if v.EffectivePriority != 0 {
			prio = fmt.Sprintf(", priority %d (effective %d)", v.Priority, v.EffectivePriority)
		}
		master := ""
		if v.Master.IsValid() {
			master = ", master " + v.Master.String()
		}
		fmt.Fprintf(w, "vrrp_instance %s: %s since %s ago%s%s, VIPs %v\n", v.Name, v.State,
			now.Sub(v.Since).Round(time.Second), prio, master, v.VIPs)
		if v.Stats != nil {
			fmt.Fprintf(w, "  adverts sent %d, received %d; transitions %d; errors %d; %s\n", v.Stats.AdvertsSent,
				v.Stats.AdvertsReceived, v.Stats.Transitions, v.Stats.Errors, vrrpDrops(v.Stats.Dropped))
		}
	}
	for _, s := range st.Services {
		up := 0
		for _, r := range s.RealServers {
			if r.Healthy {
				up++
			}
		}
		fmt.Fprintf(w, "\n%s %s:%d %s: %d of %d real servers healthy\n", s.Protocol, s.VIP, s.Port, s.Scheduler, up, len(s.RealServers))
		for _, r := range s.RealServers {
			health := "healthy"
			if !r.Healthy {
				health = "DOWN"
			}
			line := fmt.Sprintf("  %-28s %-7s weight %-6d %-7s %s", fmt.Sprintf("%s:%d", r.Address, r.Port), r.Forward, r.Weight,
				health, lastCheck(r.Check))
			fmt.Fprintln(w, strings.TrimRight(line, " "))
		}
	}
}

// vrrpDrops says how many adverts an instance refused and why, e.g. "dropped 3 (auth 1, ttl 2)".
func vrrpDrops(by map[string]uint64) string {
	var total uint64
	reasons := make([]string, 0, len(by))
	for reason, n := range by {
		if n > 0 {
			total += n
			reasons = append(reasons, fmt.Sprintf("%s %d", reason, n))
		}
	}
	if total == 0 {
		return "dropped 0"
	}
	slices.Sort(reasons)
	return fmt.Sprintf("dropped %d (%s)", total, strings.Join(reasons, ", "))
}

// lastCheck describes a real server's last health-check probe by the checker's kind, e.g. "last
// check TCP_CHECK 1.2ms" or "last check MISC_CHECK 3s failed: exit status 1"; empty before the
// first probe. --json has the checker's full description.
func lastCheck(c *Check) string {
	if c == nil || c.Checker == "" {
		return ""
	}
	kind, _, _ := strings.Cut(c.Checker, " ") // "MISC_CHECK [\"/bin/check\"] [...]": the kind is enough here
	s := fmt.Sprintf("last check %s %v", kind, c.Latency.Round(time.Microsecond))
	if c.Error != "" {
		s += " failed: " + c.Error
	}
	return s
}

// Dump writes the dump of the given kind to dir/INSTANCE.KIND and returns its path. The file is
// written under a random name with mode 0600 and renamed into place, so a reader never sees half
// a dump and a symlink planted at the final name is replaced, never followed.
func Dump(dir, instance, kind string, st Status, now time.Time) (string, error) {
	var b bytes.Buffer
	switch kind {
	case DumpData:
		WriteStatus(&b, st, now)
	case DumpStats:
		WriteList(&b, st, ListOptions{Stats: true})
	case DumpJSON:
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("unknown dump %q", kind)
	}
	if err := secureDir(dir); err != nil {
		return "", err
	}
	final := filepath.Join(dir, instance+"."+kind)
	f, err := os.CreateTemp(dir, "."+instance+"."+kind+".*")
	if err != nil {
		return "", fmt.Errorf("write %s dump: %w", kind, err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return "", fmt.Errorf("write %s dump: %w", kind, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write %s dump: %w", kind, err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return "", fmt.Errorf("write %s dump: %w", kind, err)
	}
	return final, nil
}
