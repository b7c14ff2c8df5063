package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Value ranges, from keepalived 2.2's parsers (the limits `keepalived -t` enforces).
const (
	maxWeight      = 2147483647
	maxRetry       = 4294967295
	minPersistence = 1
	maxPersistence = 2678400 // 31 days
	// defaultPersistence is what a bare persistence_timeout means (IPVS_SVC_PERSISTENT_TIMEOUT).
	defaultPersistence = 360 * time.Second

	maxTimer          = 2147483647 * time.Second // keeps every timer inside time.Duration
	maxConnectTimeout = 4294967295 * time.Microsecond
)

// parseInt parses a decimal integer in [lo, hi]; the error says what was expected.
func parseInt(s string, lo, hi int64) (int64, error) {
	want := fmt.Errorf("expected an integer in %d..%d", lo, hi)
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		if strings.HasPrefix(s, "-") && strings.TrimLeft(s[1:], "0123456789") == "" && len(s) > 1 {
			return 0, fmt.Errorf("negative number, %w", want)
		}
		return 0, want
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("out of range, %w", want)
	}
	return v, nil
}

// parseTimer parses keepalived's <TIMER>: seconds with up to 6 decimal places (microseconds).
func parseTimer(s string, lo, hi time.Duration) (time.Duration, error) {
	want := fmt.Errorf("expected seconds in %s..%s with at most 6 decimal places", fmtSeconds(lo), fmtSeconds(hi))
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" && frac == "" || strings.TrimLeft(whole, "0123456789") != "" ||
		strings.TrimLeft(frac, "0123456789") != "" || hasDot && frac == "" {
		return 0, want
	}
	if len(frac) > 6 {
		return 0, fmt.Errorf("too many decimal places, %w", want)
	}
	if whole == "" {
		whole = "0"
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > int64(hi/time.Second) {
		return 0, fmt.Errorf("out of range, %w", want)
	}
	var us int64
	if frac != "" {
		us, _ = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	d := time.Duration(w)*time.Second + time.Duration(us)*time.Microsecond
	if d < lo || d > hi {
		return 0, fmt.Errorf("out of range, %w", want)
	}
	return d, nil
}

func fmtSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

var errZone = errors.New("expected an IPv4 or IPv6 address without a %zone")

// parseAddr parses an IPv4 or IPv6 address as keepalived writes them (no brackets, no zone).
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, errors.New("expected an IPv4 or IPv6 address")
	}
	if a.Zone() != "" {
		return netip.Addr{}, errZone
	}
	return a, nil
}

// parseBool parses keepalived's <BOOL>.
func parseBool(s string) (bool, error) {
	switch s {
	case "on", "true", "yes":
		return true, nil
	case "off", "false", "no":
		return false, nil
	}
	return false, errors.New("expected one of on, off, true, false, yes, no")
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// parseSignedInt parses a decimal integer, optionally negative, in [lo, hi].
func parseSignedInt(s string, lo, hi int64) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	want := fmt.Errorf("expected an integer in %d..%d", lo, hi)
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" || len(digits) > 18 {
		return 0, want
	}
	v, _ := strconv.ParseInt(digits, 10, 64)
	if neg {
		v = -v
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("out of range, %w", want)
	}
	return v, nil
}
