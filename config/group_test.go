package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestVirtualServerGroupErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"range end before start", "virtual_server_group g {\n  192.0.2.20-10 80\n}\n", []string{
			`t.conf:2:3: invalid virtual_server_group address "192.0.2.20-10": invalid range end "10": out of range, expected an integer in 20..255`,
		}},
		{"range over the cap", "virtual_server_group g {\n  10.0.0.0/8 80\n}\n", []string{
			`t.conf:2:3: virtual_server_group g: 10.0.0.0/8 brings the group to more than 1024 addresses, more than the 1024 a group may serve: expected a smaller range`,
		}},
		{"ranges adding up over the cap", "virtual_server_group g {\n  10.0.0.0/23 80\n  10.0.4.0/22 80\n}\n", []string{
			`t.conf:3:3: virtual_server_group g: 10.0.4.0/22 brings the group to 1536 addresses, more than the 1024 a group may serve: expected a smaller range`,
		}},
		{"IPv6 range over the cap", "virtual_server_group g {\n  2001:db8::1-ffff 80\n}\n", []string{
			`t.conf:2:3: virtual_server_group g: 2001:db8::1-ffff brings the group to more than 1024 addresses, more than the 1024 a group may serve: expected a smaller range`,
		}},
		{"bad port", "virtual_server_group g {\n  192.0.2.1 http\n}\n", []string{
			`t.conf:2:13: invalid virtual_server_group port "http": expected an integer in 0..65535`,
		}},
		{"bad fwmark", "virtual_server_group g {\n  fwmark 0\n}\n", []string{
			`t.conf:2:10: invalid fwmark "0": out of range, expected an integer in 1..4294967295`,
		}},
		{"bad fwmark family", "virtual_server_group g {\n  fwmark 3 ipv6\n}\n", []string{
			`t.conf:2:12: invalid fwmark family "ipv6": expected inet or inet6`,
		}},
		{"mixed families in a range", "virtual_server_group g {\n  192.0.2.1-2001:db8::1 80\n}\n", []string{
			`t.conf:2:3: invalid virtual_server_group address "192.0.2.1-2001:db8::1": expected the range's last address after its first, in the same family`,
		}},
		{"unknown protocol", "virtual_server 192.0.2.1 80 {\n  protocol ICMP\n}\n", []string{
			`t.conf:2:12: invalid protocol "ICMP": expected TCP, UDP or SCTP`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parse(mapFS{}, "t.conf", []byte(tt.src), Options{ConfigID: "testhost"})
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("parse error = %v (config %+v), want an ErrorList", err, cfg)
			}
			if diff := cmp.Diff(tt.want, errStrings(list)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestGroupAndFWMarkServedWithoutWarnings checks that groups, firewall marks and SCTP parse as
// served: typed, and without a "not supported" warning.
func TestGroupAndFWMarkServedWithoutWarnings(t *testing.T) {
	cfg := parseOK(t, `virtual_server_group g {
  192.0.2.1-4 80
  2001:db8::a-c 80
  fwmark 9 inet6
}
virtual_server group g {
  protocol TCP
  real_server 10.0.0.1 80 {
  }
}
virtual_server fwmark 5 {
  real_server 10.0.0.1 80 {
  }
}
virtual_server 192.0.2.9 3868 {
  protocol SCTP
  real_server 10.0.0.1 3868 {
  }
}
`)
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	if len(cfg.VirtualServers) != 1 || cfg.VirtualServers[0].Protocol != SCTP {
		t.Errorf("virtual servers = %+v, want the SCTP one", cfg.VirtualServers)
	}
	if len(cfg.OtherVirtualServers) != 2 {
		t.Fatalf("other virtual servers = %+v, want the group and the fwmark", cfg.OtherVirtualServers)
	}
	var got []string
	for _, e := range cfg.VirtualServerGroups[0].Entries {
		for _, a := range e.Addresses() {
			got = append(got, a.String())
		}
	}
	want := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "2001:db8::a", "2001:db8::b", "2001:db8::c"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
}

func TestRangeSizeAndAddresses(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		first, last netip.Addr
		size        uint64
	}{
		{a("10.0.0.1"), a("10.0.0.1"), 1},
		{a("10.0.0.1"), a("10.0.0.10"), 10},
		{a("10.0.0.0"), a("10.0.3.255"), 1024},
		{a("10.0.0.0"), a("10.255.255.255"), MaxGroupAddresses + 1},
		{a("::"), a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), MaxGroupAddresses + 1},
	}
	for _, tt := range tests {
		if got := rangeSize(tt.first, tt.last); got != tt.size {
			t.Errorf("rangeSize(%s, %s) = %d, want %d", tt.first, tt.last, got, tt.size)
		}
		if tt.size <= MaxGroupAddresses {
			if got := len(VSGroupEntry{First: tt.first, Last: tt.last}.Addresses()); uint64(got) != tt.size {
				t.Errorf("Addresses(%s-%s) has %d, want %d", tt.first, tt.last, got, tt.size)
			}
		}
	}
	// The last address of the space ends the walk.
	top := a("255.255.255.255")
	if got := (VSGroupEntry{First: top, Last: top}).Addresses(); len(got) != 1 {
		t.Errorf("Addresses(255.255.255.255) = %v", got)
	}
}

// TestConvertIPVSADMSCTP checks that `ipvsadm -Sn` SCTP services (-z, --sctp-service) convert
// to `protocol SCTP` virtual servers that parse back.
func TestConvertIPVSADMSCTP(t *testing.T) {
	out, err := ConvertIPVSADM("rules", strings.NewReader("-A -z 192.0.2.10:3868 -s rr\n-a --sctp-service 192.0.2.10:3868 -r 10.0.0.1:3868 -m -w 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := parseConverted(t, out)
	if len(cfg.VirtualServers) != 1 || cfg.VirtualServers[0].Protocol != SCTP || len(cfg.VirtualServers[0].RealServers) != 1 {
		t.Errorf("converted:\n%s\nparsed: %+v", out, cfg.VirtualServers)
	}
}
