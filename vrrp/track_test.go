package vrrp

import (
	"testing"
)

func TestEffectivePriority(t *testing.T) {
	iface := func(w int, rev, up bool) Track {
		return Track{Kind: TrackInterfaceKind, Name: "eth1", Weight: w, Reverse: rev, Up: up}
	}
	script := func(w int, rev, up bool) Track {
		return Track{Kind: TrackScriptKind, Name: "chk", Weight: w, Reverse: rev, Up: up}
	}
	file := func(w int, rev bool, v int64) Track {
		return Track{Kind: TrackFileKind, Name: "f", Weight: w, Reverse: rev, Value: v}
	}
	tests := []struct {
		name      string
		base      uint8
		tracks    []Track
		wantPrio  uint8
		wantFault bool
		wantWhy   string
	}{
		{"nothing tracked", 100, nil, 100, false, ""},
		{"interface weight 0 up", 100, []Track{iface(0, false, true)}, 100, false, ""},
		{"interface weight 0 down faults", 100, []Track{iface(0, false, false)}, 100, true, "track_interface eth1"},
		{"interface weight 0 reverse: up faults", 100, []Track{iface(0, true, true)}, 100, true, "track_interface eth1"},
		{"interface weight 0 reverse: down is fine", 100, []Track{iface(0, true, false)}, 100, false, ""},
		{"positive weight added while up", 100, []Track{iface(10, false, true)}, 110, false, ""},
		{"positive weight not added while down", 100, []Track{iface(10, false, false)}, 100, false, ""},
		{"negative weight added while down", 100, []Track{iface(-30, false, false)}, 70, false, ""},
		{"negative weight not added while up", 100, []Track{iface(-30, false, true)}, 100, false, ""},
		{"positive weight reverse: subtracted while up", 100, []Track{iface(10, true, true)}, 90, false, ""},
		{"negative weight reverse: added while down", 100, []Track{iface(-30, true, false)}, 130, false, ""},
		{"script weight 0 failing faults", 100, []Track{script(0, false, false)}, 100, true, "track_script chk"},
		{"script weight 2 succeeding", 100, []Track{script(2, false, true)}, 102, false, ""},
		{"script weight -60 failing", 100, []Track{script(-60, false, false)}, 40, false, ""},
		{"weights add up", 100, []Track{iface(10, false, true), script(-20, false, false), script(5, false, true)}, 95, false, ""},
		{"clamped to 254", 250, []Track{script(10, false, true)}, 254, false, ""},
		{"clamped to 1", 10, []Track{script(-100, false, false)}, 1, false, ""},
		{"owner unchanged by weights", 255, []Track{script(-100, false, false)}, 255, true, "track_script chk"},
		{"owner with a weighted track that succeeds", 255, []Track{script(-100, false, true)}, 255, false, ""},
		{"file value times weight", 100, []Track{file(2, false, 5)}, 110, false, ""},
		{"file negative value", 100, []Track{file(1, false, -20)}, 80, false, ""},
		{"file reverse negates", 100, []Track{file(2, true, 5)}, 90, false, ""},
		{"file weight 0 and value 0", 100, []Track{file(0, false, 0)}, 100, false, ""},
		{"file weight 0 and nonzero value faults", 100, []Track{file(0, false, 3)}, 100, true, "track_file f"},
		{"file weight 0 reverse: zero faults", 100, []Track{file(0, true, 0)}, 100, true, "track_file f"},
		{"file result -253 only lowers", 100, []Track{file(1, false, -253)}, 1, false, ""},
		{"file result -254 faults", 100, []Track{file(1, false, -254)}, 100, true, "track_file f"},
		{"file huge value does not overflow", 100, []Track{file(254, false, 1<<62)}, 254, false, ""},
		{"file huge negative value faults", 100, []Track{file(254, false, -1<<62)}, 100, true, "track_file f"},
		{"first fault named", 100, []Track{iface(0, false, true), script(0, false, false), file(0, false, 1)}, 100, true, "track_script chk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prio, fault, why := EffectivePriority(tt.base, tt.tracks)
			if prio != tt.wantPrio || fault != tt.wantFault || why != tt.wantWhy {
				t.Errorf("EffectivePriority = %d, %v, %q; want %d, %v, %q", prio, fault, why, tt.wantPrio, tt.wantFault, tt.wantWhy)
			}
		})
	}
}

func TestScriptStatus(t *testing.T) {
	tests := []struct {
		name       string
		rise, fall int
		initFail   bool
		results    string // s: success, f: failure
		want       string // OK after each result: 1 or 0
	}{
		{"starts OK; first failure fails at once", 2, 3, false, "f", "0"},
		{"starts OK; a success keeps it OK", 2, 3, false, "s", "1"},
		{"fall 3 after a success", 1, 3, false, "sfff", "1110"},
		{"a success resets the fall count", 1, 3, false, "sffsff", "111111"},
		{"rise 3", 3, 1, false, "fsss", "0001"},
		{"a failure resets the rise count", 3, 1, false, "fssfsss", "0000001"},
		{"init_fail needs rise successes", 2, 2, true, "ss", "01"},
		{"init_fail rise 1", 1, 1, true, "sf", "10"},
		{"zero rise and fall count as 1", 0, 0, false, "fsf", "010"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := NewScriptStatus(tt.rise, tt.fall, tt.initFail)
			if st.OK() == tt.initFail {
				t.Errorf("initial OK = %v with init_fail %v", st.OK(), tt.initFail)
			}
			got := ""
			for _, r := range tt.results {
				was := st.OK()
				changed := st.Record(r == 's')
				if changed != (was != st.OK()) {
					t.Errorf("Record reported changed=%v, OK went %v -> %v", changed, was, st.OK())
				}
				if st.OK() {
					got += "1"
				} else {
					got += "0"
				}
			}
			if got != tt.want {
				t.Errorf("OK after %s = %s, want %s", tt.results, got, tt.want)
			}
		})
	}
}

func TestParseTrackFile(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"", 0}, {"0\n", 0}, {"5\n", 5}, {"  -20\n", -20}, {"+7", 7}, {"12abc", 12},
		{"abc", 0}, {"-", 0}, {"99999999999999999999", 0}, {"\n\t 3", 3},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := ParseTrackFile([]byte(tt.in)); got != tt.want {
				t.Errorf("ParseTrackFile(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzParseTrackFile(f *testing.F) {
	for _, s := range []string{"0", "-254", "12abc", " +3\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v := ParseTrackFile(b)
		_, _, _ = EffectivePriority(100, []Track{{Kind: TrackFileKind, Weight: 254, Value: v}})
	})
}
