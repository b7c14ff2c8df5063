package vrrp

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Tracking, as keepalived 2.2 does it: track_interface, track_script (vrrp_script), track_file
// and track_bfd change an instance's effective priority or put it in FAULT. This file holds the
// pure rules; instance.go feeds them the interfaces' states, the scripts' exit statuses and
// the files' values.

// TrackKind says what a tracked object is.
type TrackKind int

// The kinds of tracked object.
const (
	TrackInterfaceKind TrackKind = iota + 1
	TrackScriptKind
	TrackFileKind
	TrackBFDKind
)

func (k TrackKind) String() string {
	switch k {
	case TrackInterfaceKind:
		return "track_interface"
	case TrackScriptKind:
		return "track_script"
	case TrackFileKind:
		return "track_file"
	case TrackBFDKind:
		return "track_bfd"
	}
	return "track"
}

// TrackInterface is one track_interface entry. Weight 0: the interface down faults the
// instance; weight > 0 is added while it is up, weight < 0 while it is down; Reverse
// swaps the direction (weight 0 reverse: up faults).
type TrackInterface struct {
	Name    string
	Weight  int
	Reverse bool
}

// TrackScript is a vrrp_script with the weight a track_script entry gives it.
type TrackScript struct {
	// Name is the vrrp_script's name, for logs.
	Name string
	// Path is the program and its arguments, run without a shell.
	Path []string
	// Interval is how often it runs (0: 1s); Timeout how long a run may take (0: Interval).
	Interval, Timeout time.Duration
	// Weight and Reverse as for TrackInterface, "up" meaning the script succeeds.
	Weight  int
	Reverse bool
	// Rise and Fall are the consecutive successes and failures that change its status (0: 1).
	Rise, Fall int
	// InitFail starts it failed instead of succeeding.
	InitFail bool
	// User and Group run it as another user (root only); empty: see health.MiscCheck.
	User, Group string
}

// TrackFile is a track_file with the weight a track_file entry gives it: the number in the
// file times Weight (negated with Reverse) is added to the priority, and a result below
// -253 faults the instance. Weight 0: a nonzero number faults it (Reverse: zero does).
type TrackFile struct {
	Name    string
	Path    string
	Weight  int
	Reverse bool
}

// TrackBFD is one track_bfd entry: a bfd_instance's session, with Weight and Reverse as for
// TrackInterface, "up" meaning the session is Up.
type TrackBFD struct {
	Name    string
	Weight  int
	Reverse bool
}

// Track is what is known of one tracked object: its configuration and last status.
type Track struct {
	Kind    TrackKind
	Name    string
	Weight  int
	Reverse bool
	// Up is an interface's, script's or BFD session's status.
	Up bool
	// Value is a file's number.
	Value int64
}

// faultBelow is keepalived's limit: a track_file result below it faults the instance.
const faultBelow = -253

// contribution returns what t adds to the priority, or fault when it faults the instance.
func (t Track) contribution() (delta int64, fault bool) {
	sign := int64(1)
	if t.Reverse {
		sign = -1
	}
	if t.Kind == TrackFileKind {
		if t.Weight == 0 {
			return 0, (t.Value != 0) != t.Reverse
		}
		// Clamped first so the product cannot overflow; the sum is clamped to 1..254 anyway.
		v := min(max(t.Value, -1<<40), 1<<40) * int64(t.Weight) * sign
		if v < faultBelow {
			return 0, true
		}
		return v, false
	}
	switch {
	case t.Weight == 0:
		return 0, t.Up == t.Reverse
	case t.Weight > 0 && t.Up, t.Weight < 0 && !t.Up:
		return int64(t.Weight) * sign, false
	}
	return 0, false
}

// EffectivePriority applies tracks to base as keepalived does: the sum of their contributions
// is added and the result kept to 1..254; fault is set when any track faults the instance.
// The address owner (255) is never changed: keepalived forces its tracking weights to 0, so
// only faults apply. why names the first faulting track, for logs.
func EffectivePriority(base uint8, tracks []Track) (prio uint8, fault bool, why string) {
	sum := int64(base)
	for _, t := range tracks {
		if base == PriorityOwner && t.Weight != 0 {
			t.Weight = 0
		}
		d, f := t.contribution()
		if f && !fault {
			fault, why = true, fmt.Sprintf("%s %s", t.Kind, t.Name)
		}
		sum += d
	}
	if base == PriorityOwner {
		return PriorityOwner, fault, why
	}
	return uint8(min(max(sum, 1), PriorityOwner-1)), fault, why
}

// ScriptStatus follows a vrrp_script's results with keepalived's rise and fall counter: it
// turns OK after Rise consecutive successes and failed after Fall consecutive failures.
// Without init_fail a script starts OK, and then its first failure fails it at once, as
// keepalived's does.
type ScriptStatus struct {
	rise, fall int
	result     int // 0..rise+fall-1; OK from rise up
}

// NewScriptStatus returns the status of a script before its first run.
func NewScriptStatus(rise, fall int, initFail bool) ScriptStatus {
	rise, fall = max(rise, 1), max(fall, 1)
	s := ScriptStatus{rise: rise, fall: fall, result: rise}
	if initFail {
		s.result = 0
	}
	return s
}

// OK reports whether the script counts as succeeding.
func (s ScriptStatus) OK() bool { return s.result >= s.rise }

// Record adds one run's outcome and reports whether OK changed.
func (s *ScriptStatus) Record(success bool) (changed bool) {
	was := s.OK()
	switch {
	case success && s.result < s.rise-1:
		s.result++
	case success:
		s.result = s.rise + s.fall - 1
	case s.result > s.rise:
		s.result--
	default:
		s.result = 0
	}
	return s.OK() != was
}

// maxTrackFile bounds how much of a track_file is read.
const maxTrackFile = 64

// ParseTrackFile reads a track_file's number as keepalived does (strtol on the leading text):
// leading blanks, an optional sign and digits; anything else, or nothing, is 0.
func ParseTrackFile(b []byte) int64 {
	if len(b) > maxTrackFile {
		b = b[:maxTrackFile]
	}
	s := strings.TrimLeft(string(b), " \t\r\n")
	end := 0
	if end < len(s) && (s[end] == '-' || s[end] == '+') {
		end++
	}
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	v, err := strconv.ParseInt(s[:end], 10, 64)
	if err != nil {
		return 0
	}
	return v
}
