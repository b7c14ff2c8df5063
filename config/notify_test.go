package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNotifyScripts(t *testing.T) {
	src := `global_defs {
  notification_email {
    ops@example.com
    noc@example.com
  }
  notification_email_from lb@example.com
  smtp_server 192.0.2.25 2525
  smtp_alert_vrrp off
  smtp_alert_checker
  no_email_faults
  script_user nobody nogroup
  enable_script_security
  notify_fifo /run/sluice/all.fifo
  vrrp_notify_fifo /run/sluice/vrrp.fifo root root
  vrrp_notify_fifo_script "/usr/local/bin/read-fifo -v" nobody
}
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 1
  priority 100
  virtual_ipaddress {
    192.0.2.1
  }
  notify_master "/bin/notify master now" root
  notify_backup /bin/backup nobody nogroup
  notify /bin/any
}
virtual_server 192.0.2.1 80 {
  protocol TCP
  quorum_up "/bin/q up" nobody
  real_server 10.0.0.1 80 {
    notify_up "/bin/rs up"
    notify_down /bin/rs-down nobody
    smtp_alert off
  }
}
`
	cfg := parseOK(t, src)
	for _, w := range cfg.Warnings {
		if strings.Contains(w.Msg, "not supported") && !strings.HasPrefix(w.Msg, "quorum") { // quorum: its own issue
			t.Errorf("unexpected warning: %s", w)
		}
	}
	g := cfg.Global
	if g.SMTPAlertVRRP == nil || *g.SMTPAlertVRRP || g.SMTPAlertChecker == nil || !*g.SMTPAlertChecker || !g.NoEmailFaults {
		t.Errorf("smtp_alert_vrrp %v, smtp_alert_checker %v, no_email_faults %v", g.SMTPAlertVRRP, g.SMTPAlertChecker, g.NoEmailFaults)
	}
	if g.SMTPServer != "192.0.2.25 2525" || len(g.NotificationEmail) != 2 || g.NotificationEmailFrom != "lb@example.com" {
		t.Errorf("smtp %q %q %q", g.SMTPServer, g.NotificationEmail, g.NotificationEmailFrom)
	}
	if diff := cmp.Diff(NotifyFIFO{Path: "/run/sluice/all.fifo"}, g.NotifyFIFO); diff != "" {
		t.Errorf("notify_fifo (-want +got):\n%s", diff)
	}
	want := NotifyFIFO{Path: "/run/sluice/vrrp.fifo", User: "root", Group: "root",
		Script: "/usr/local/bin/read-fifo -v", ScriptUser: ScriptUser{User: "nobody"}}
	if diff := cmp.Diff(want, g.VRRPNotifyFIFO); diff != "" {
		t.Errorf("vrrp_notify_fifo (-want +got):\n%s", diff)
	}
	wantNotify := Notify{Master: "/bin/notify master now", MasterUser: ScriptUser{User: "root"},
		Backup: "/bin/backup", BackupUser: ScriptUser{User: "nobody", Group: "nogroup"}, Any: "/bin/any"}
	if diff := cmp.Diff(wantNotify, cfg.VRRPInstances[0].Notify); diff != "" {
		t.Errorf("vrrp notify (-want +got):\n%s", diff)
	}
	vs := cfg.VirtualServers[0]
	if vs.QuorumUp != "/bin/q up" || vs.QuorumUpUser != (ScriptUser{User: "nobody"}) {
		t.Errorf("quorum_up %q %+v", vs.QuorumUp, vs.QuorumUpUser)
	}
	rs := vs.RealServers[0]
	if rs.NotifyUp != "/bin/rs up" || rs.NotifyUpUser != (ScriptUser{}) ||
		rs.NotifyDown != "/bin/rs-down" || rs.NotifyDownUser != (ScriptUser{User: "nobody"}) {
		t.Errorf("notify_up %q %+v, notify_down %q %+v", rs.NotifyUp, rs.NotifyUpUser, rs.NotifyDown, rs.NotifyDownUser)
	}
	if rs.SMTPAlert == nil || *rs.SMTPAlert {
		t.Errorf("real server smtp_alert = %v, want off", rs.SMTPAlert)
	}
}
