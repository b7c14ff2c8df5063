package control

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestStatusInterfaces: the data plane's interfaces and their XDP modes reach Status and the
// text `sluice status` prints, with the reason for each mode.
func TestStatusInterfaces(t *testing.T) {
	s := NewState(Status{Version: "test", Dataplane: "xdp"}, nil, nil)
	if got := s.Status().Interfaces; got != nil {
		t.Errorf("interfaces without a lister: %v, want none", got)
	}
	want := []Interface{
		{Name: "eth0", Mode: "xdp native", Reason: "adopted"},
		{Name: "br0", Mode: "xdp generic", Reason: "native XDP failed: operation not supported"},
		{Name: "eth1", Mode: "xdp native"},
	}
	s.SetInterfaces(func() []Interface { return want })
	st := s.Status()
	if diff := cmp.Diff(want, st.Interfaces); diff != "" {
		t.Errorf("status interfaces (-want +got):\n%s", diff)
	}

	var b strings.Builder
	WriteStatus(&b, st, st.Started.Add(time.Minute))
	for _, line := range []string{
		"interface eth0: xdp native (adopted)\n",
		"interface br0: xdp generic (native XDP failed: operation not supported)\n",
		"interface eth1: xdp native\n",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("status output lacks %q:\n%s", line, b.String())
		}
	}
}
