package main

import (
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/ipvsfallback"
)

func TestOpenDataplane(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	xdpErr := errors.New("xdp opened")
	openXDP := func() (forwarder, error) { return nil, xdpErr }

	if _, err := openDataplane("xdp", log, openXDP); !errors.Is(err, xdpErr) {
		t.Errorf("xdp: error = %v, want the XDP opener's", err)
	}
	if _, err := openDataplane("dpdk", log, openXDP); err == nil || !strings.Contains(err.Error(), `unknown data plane "dpdk"`) {
		t.Errorf("dpdk: error = %v, want unknown data plane", err)
	}
	for _, name := range []string{"xdp", "ipvs"} {
		if !validDataplane(name) {
			t.Errorf("validDataplane(%q) = false", name)
		}
	}
	if os.Geteuid() != 0 {
		return // opening IPVS needs root; the rest is covered by ipvsfallback and test/vm
	}
	dp, err := openDataplane("ipvs", log, openXDP)
	if err != nil {
		if !errors.Is(err, ipvsfallback.ErrUnavailable) {
			t.Fatalf("ipvs: error = %v, want ErrUnavailable on a kernel without IPVS", err)
		}
		return
	}
	if err := dp.Close(); err != nil {
		t.Fatal(err)
	}
}
