package director

import (
	"cmp"
	"fmt"
	"net/netip"

	"github.com/sluice-lb/sluice/config"
	"github.com/sluice-lb/sluice/health"
)

// checkersOf builds the health checkers of a real server from its parsed checker blocks, in
// file order. keepalived's settings are resolved by the config package (checker, then real
// server, then virtual server, then the kind's default); this maps them onto the health
// package. BFD_CHECK follows the process's session of its bfd_instance (bfdSessions).
func checkersOf(cfg *config.Config, rs config.RealServer) ([]health.Checker, error) {
	var out []health.Checker
	for _, c := range rs.Checkers {
		addr := netip.AddrPortFrom(cmp.Or(c.ConnectIP, rs.Addr), cmp.Or(c.ConnectPort, rs.Port))
		src := health.Source{BindPort: c.BindPort, BindIf: c.BindIf, FWMark: c.FWMark}
		timeout := cmp.Or(c.ConnectTimeout, health.DefaultTimeout)
		switch c.Kind {
		case config.KindTCP:
			out = append(out, health.TCPCheck{Addr: addr, BindTo: c.BindTo, Source: src, Timeout: timeout})
		case config.KindHTTP, config.KindSSL:
			if c.HTTP == nil {
				return nil, fmt.Errorf("%s: %s without options", c.Pos, c.Kind)
			}
			o := health.HTTPOptions{
				Addr: addr, BindTo: c.BindTo, Source: src, Timeout: timeout,
				TLS:          c.Kind == config.KindSSL,
				EnableSNI:    c.HTTP.EnableSNI,
				SNIName:      c.HTTP.SNIName,
				TLSCompliant: c.HTTP.TLSCompliant,
				Protocol:     c.HTTP.HTTPProtocol,
				VirtualHost:  c.HTTP.Virtualhost,
			}
			if o.TLS && cfg.SSL != nil {
				o.SSL = &health.SSLConfig{CA: cfg.SSL.CA, Certificate: cfg.SSL.Certificate, Key: cfg.SSL.Key, Password: cfg.SSL.Password}
			}
			for _, u := range c.HTTP.URLs {
				hu := health.URL{Path: u.Path, Digest: u.Digest, VirtualHost: u.Virtualhost, Regex: u.Regex, RegexNoMatch: u.RegexNoMatch}
				for _, r := range u.StatusCodes {
					hu.StatusCodes = append(hu.StatusCodes, health.StatusRange{Min: r.Lo, Max: r.Hi})
				}
				o.URLs = append(o.URLs, hu)
			}
			h, err := health.NewHTTPCheck(o)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.Pos, err)
			}
			out = append(out, h)
		case config.KindSMTP:
			helo := ""
			if c.SMTP != nil {
				helo = c.SMTP.HeloName
			}
			out = append(out, health.SMTPCheck{Addr: addr, BindTo: c.BindTo, Source: src, Timeout: timeout, HeloName: helo})
			if c.SMTP != nil {
				// keepalived checks each old-style host block as well.
				for _, h := range c.SMTP.Hosts {
					out = append(out, health.SMTPCheck{
						Addr:   netip.AddrPortFrom(cmp.Or(h.ConnectIP, addr.Addr()), cmp.Or(h.ConnectPort, addr.Port())),
						BindTo: h.BindTo, Source: health.Source{BindPort: h.BindPort, BindIf: h.BindIf, FWMark: h.FWMark},
						Timeout: timeout, HeloName: helo,
					})
				}
			}
		case config.KindDNS:
			d := health.DNSCheck{Addr: addr, BindTo: c.BindTo, Source: src, Timeout: timeout}
			if c.DNS != nil {
				d.Type, d.Name = c.DNS.Type, c.DNS.Name
			}
			out = append(out, d)
		case config.KindUDP:
			u := health.UDPCheck{Addr: addr, BindTo: c.BindTo, Source: src, Timeout: timeout}
			if c.UDP != nil {
				u.Payload = c.UDP.Payload
				u.RequireReply = c.UDP.RequireReply
				u.ReplyPattern = health.HexPattern{Data: c.UDP.ReplyData, Mask: c.UDP.ReplyMask}
				u.MinReplyLength, u.MaxReplyLength = c.UDP.MinReplyLength, c.UDP.MaxReplyLength
			}
			out = append(out, u)
		case config.KindPing:
			out = append(out, health.PingCheck{Addr: addr.Addr(), BindTo: c.BindTo, Timeout: timeout})
		case config.KindMisc:
			if c.Misc == nil {
				return nil, fmt.Errorf("%s: MISC_CHECK without misc_path", c.Pos)
			}
			argv, err := health.SplitMiscPath(c.Misc.Path)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.Pos, err)
			}
			out = append(out, health.MiscCheck{Path: argv, Timeout: cmp.Or(c.Misc.Timeout, c.DelayLoop),
				Dynamic: c.Misc.Dynamic, Weight: rs.Weight, User: c.Misc.User, Group: c.Misc.Group})
		case config.KindFile:
			if c.File == nil {
				return nil, fmt.Errorf("%s: FILE_CHECK without track_file", c.Pos)
			}
			tf, ok := trackFile(cfg, c.File.TrackFile)
			if !ok {
				return nil, fmt.Errorf("%s: FILE_CHECK names track_file %q, which is not defined", c.Pos, c.File.TrackFile)
			}
			out = append(out, health.FileCheck{Path: tf.File, Weight: cmp.Or(c.File.Weight, tf.Weight), Reverse: c.File.Reverse || tf.Reverse})
		case config.KindBFD:
			if c.BFD == nil {
				return nil, fmt.Errorf("%s: BFD_CHECK without name", c.Pos)
			}
			out = append(out, health.BFDCheck{Name: c.BFD.Name, Sessions: bfdSessions})
		}
	}
	return out, nil
}

func trackFile(cfg *config.Config, name string) (config.TrackFile, bool) {
	for _, tf := range cfg.TrackFiles {
		if tf.Name == name {
			return tf, true
		}
	}
	return config.TrackFile{}, false
}
