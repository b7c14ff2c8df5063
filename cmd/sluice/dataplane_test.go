package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-lb/sluice/control"
	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/director"
	"github.com/sluice-lb/sluice/ipvsfallback"
	"github.com/sluice-lb/sluice/loader"
)

// stubForwarder stands in for an opened IPVS data plane: this kernel has no IPVS, and which
// data plane openDataplane picks is what is tested here (test/vm runs the real IPVS one).
type stubForwarder struct{ name string }

func (stubForwarder) Apply(context.Context, director.Snapshot) error { return nil }
func (stubForwarder) Close() error                                   { return nil }
func (stubForwarder) TrafficStats() (director.TrafficStats, error) {
	return director.TrafficStats{}, nil
}

func TestOpenDataplane(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	xdpErr := errors.New("load xdp program: operation not permitted")
	ipvsErr := errors.New("IPVS is not available in this kernel")
	okXDP := func() (forwarder, error) { return stubForwarder{"xdp"}, nil }
	badXDP := func() (forwarder, error) { return nil, xdpErr }
	okIPVS := func() (forwarder, error) { return stubForwarder{"ipvs"}, nil }
	inUseXDP := func() (forwarder, error) {
		return nil, fmt.Errorf("pin directory /sys/fs/bpf/sluice/x: %w", loader.ErrInUse)
	}
	badIPVS := func() (forwarder, error) { return nil, ipvsErr }

	for _, tc := range []struct {
		name, dataplane string
		xdp, ipvs       func() (forwarder, error)
		wantUse         string // prefix
		wantErr         []string
	}{
		{"xdp", "xdp", okXDP, badIPVS, "xdp", nil},
		{"xdp-generic", "xdp-generic", okXDP, badIPVS, "xdp-generic", nil},
		{"xdp-generic fails", "xdp-generic", badXDP, okIPVS, "", []string{"operation not permitted"}},
		{"xdp fails", "xdp", badXDP, okIPVS, "", []string{"operation not permitted"}},
		{"ipvs", "ipvs", okXDP, okIPVS, "ipvs", nil},
		{"auto takes xdp", "auto", okXDP, okIPVS, "xdp", nil},
		{"auto falls back to ipvs", "auto", badXDP, okIPVS, "ipvs (auto: XDP unavailable: load xdp program", nil},
		{"auto with neither", "auto", badXDP, badIPVS, "", []string{"no data plane can run", "operation not permitted", "IPVS is not available"}},
		{"auto with the instance in use", "auto", inUseXDP, okIPVS, "", []string{"in use by another sluice"}},
		{"unknown", "dpdk", okXDP, okIPVS, "", []string{`unknown data plane "dpdk"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dp, use, err := openDataplane(tc.dataplane, log, tc.xdp, tc.ipvs)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("opened %q, want an error", use)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil || !strings.HasPrefix(use, tc.wantUse) || dp == nil {
				t.Errorf("opened %q (%v), want %q", use, err, tc.wantUse)
			}
		})
	}
	for _, name := range []string{"auto", "xdp", "xdp-generic", "ipvs"} {
		if !validDataplane(name) {
			t.Errorf("validDataplane(%q) = false", name)
		}
	}
}

// TestOpenIPVSOnThisKernel opens the real IPVS data plane: on a kernel without IPVS it must say
// so with ErrUnavailable.
func TestOpenIPVSOnThisKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("opening IPVS needs root; ipvsfallback and test/vm cover the rest")
	}
	dp, err := openIPVS(slog.New(slog.DiscardHandler))
	if err != nil {
		if !errors.Is(err, ipvsfallback.ErrUnavailable) {
			t.Fatalf("error = %v, want ErrUnavailable on a kernel without IPVS", err)
		}
		return
	}
	dp.Close()
}

// TestAutoWrapsXDP checks that --dataplane auto hands the XDP data plane to dataplane.Auto,
// which moves the services of interfaces XDP cannot attach to onto IPVS.
func TestAutoWrapsXDP(t *testing.T) {
	okXDP := func() (forwarder, error) { return stubForwarder{"xdp"}, nil }
	okIPVS := func() (forwarder, error) { return stubForwarder{"ipvs"}, nil }
	dp, _, err := openDataplane("auto", slog.New(slog.DiscardHandler), okXDP, okIPVS)
	if err != nil {
		t.Fatal(err)
	}
	auto, ok := dp.(*dataplane.Auto)
	if !ok {
		t.Fatalf("auto opened %T, want *dataplane.Auto", dp)
	}
	if got := auto.XDP(); got != (stubForwarder{"xdp"}) {
		t.Errorf("Auto wraps %v, want the XDP data plane", got)
	}
}

func TestFailedInterfaces(t *testing.T) {
	got := failedInterfaces([]dataplane.Failure{
		{Ifindex: 3, Name: "eth1", Reason: "attach xdp to eth1: native: busy; generic: exists"},
		{Ifindex: 4, Reason: "attach xdp: busy", FallbackErr: "IPVS is not available"},
	})
	want := []control.Interface{
		{Name: "eth1", Mode: "ipvs", Reason: "auto: XDP cannot attach: attach xdp to eth1: native: busy; generic: exists"},
		{Name: "ifindex 4", Mode: "none", Reason: "auto: XDP cannot attach: attach xdp: busy; IPVS unavailable: IPVS is not available"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("failedInterfaces (-want +got):\n%s", diff)
	}
}
