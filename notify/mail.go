package notify

import (
	"fmt"

	"github.com/sluice-lb/sluice/config"
)

// VRRPMail is keepalived's alert for a vrrp_instance (kind "INSTANCE") or vrrp_sync_group
// ("GROUP") entering state: "[ROUTER_ID] VRRP Instance VI_1 - Entering MASTER state".
func VRRPMail(routerID, kind, name, state string) Mail {
	subject, what := "VRRP Instance", "VRRP Instance is"
	if kind == "GROUP" {
		subject = "VRRP Group"
	}
	m := Mail{Subject: fmt.Sprintf("[%s] %s %s - Entering %s state", routerID, subject, name, state)}
	switch {
	case state == StateStop && kind == "GROUP":
		m.Subject = fmt.Sprintf("[%s] %s %s - Stopping", routerID, subject, name)
		m.Body = "=> All VRRP group instances are now stopping <="
	case state == StateStop:
		m.Subject = fmt.Sprintf("[%s] %s %s - Stopping", routerID, subject, name)
		m.Body = "=> VRRP Instance stopping <="
	case kind == "GROUP":
		m.Body = fmt.Sprintf("=> All VRRP group instances are now in %s state <=", state)
	case state == StateMaster:
		m.Body = "=> " + what + " now owning VRRP VIPs <="
	default:
		m.Body = "=> " + what + " no longer owning VRRP VIPs <="
	}
	return m
}

// RealServerMail is keepalived's checker alert: "[ROUTER_ID] Realserver [10.0.0.1]:tcp:80 of
// virtual server [192.0.2.1]:tcp:80 - DOWN", with the checker's line as the body.
func RealServerMail(routerID string, vs config.VirtualServer, rs config.RealServer, up bool) Mail {
	return Mail{
		Subject: fmt.Sprintf("[%s] Realserver %s of virtual server %s - %s", routerID,
			service(rs.Addr, rs.Port, vs.Protocol), service(vs.Addr, vs.Port, vs.Protocol), upDown(up)),
		Body: checkerBody(rs, up),
	}
}

// VirtualServerMail is keepalived's quorum alert: "[ROUTER_ID] Virtualserver
// [192.0.2.1]:tcp:80 - UP".
func VirtualServerMail(routerID string, vs config.VirtualServer, up bool) Mail {
	body := "=> Lost quorum <="
	if up {
		body = "=> Gained quorum <="
	}
	return Mail{Subject: fmt.Sprintf("[%s] Virtualserver %s - %s", routerID, service(vs.Addr, vs.Port, vs.Protocol), upDown(up)), Body: body}
}

// checkerBody is the line keepalived's checker of the real server's kind writes.
func checkerBody(rs config.RealServer, up bool) string {
	name := "CHECK"
	if len(rs.Checkers) > 0 {
		switch rs.Checkers[0].Kind {
		case config.KindTCP:
			name = "TCP CHECK"
		case config.KindMisc:
			name = "MISC CHECK"
		case config.KindUDP:
			name = "UDP CHECK"
		case config.KindPing:
			name = "ICMP CHECK"
		case config.KindDNS:
			name = "DNS_CHECK:"
		}
	}
	if up {
		return "=> " + name + " succeed on service <="
	}
	return "=> " + name + " failed on service <="
}

// vrrpAlert is keepalived's rule for a vrrp_instance or vrrp_sync_group: its smtp_alert,
// else global_defs smtp_alert_vrrp, else smtp_alert, else no.
func vrrpAlert(g config.GlobalDefs, set bool) bool {
	return set || firstSet(false, g.SMTPAlertVRRP, g.SMTPAlert)
}

// checkerAlert is keepalived's rule for a real server: its smtp_alert, else global_defs
// smtp_alert_checker, else smtp_alert, else yes (keepalived keeps its old default here).
func checkerAlert(g config.GlobalDefs, rs *bool) bool {
	return firstSet(true, rs, g.SMTPAlertChecker, g.SMTPAlert)
}

// virtualServerAlert is keepalived's rule for a virtual server's quorum alerts: its
// smtp_alert, else smtp_alert_checker, else smtp_alert, else no.
func virtualServerAlert(g config.GlobalDefs, vs *bool) bool {
	return firstSet(false, vs, g.SMTPAlertChecker, g.SMTPAlert)
}

func firstSet(def bool, vs ...*bool) bool {
	for _, v := range vs {
		if v != nil {
			return *v
		}
	}
	return def
}
