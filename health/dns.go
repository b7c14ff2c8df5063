package health

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// ErrDNSReply is reported for a DNS reply that answers with an error or without an answer.
var ErrDNSReply = errors.New("bad dns reply")

// dnsTypes are the query types DNS_CHECK accepts.
var dnsTypes = map[string]dnsmessage.Type{
	"A": dnsmessage.TypeA, "NS": dnsmessage.TypeNS, "CNAME": dnsmessage.TypeCNAME,
	"SOA": dnsmessage.TypeSOA, "MX": dnsmessage.TypeMX, "TXT": dnsmessage.TypeTXT,
	"AAAA": dnsmessage.TypeAAAA,
}

// DNSCheck is keepalived's DNS_CHECK: it sends one query over UDP and passes when the reply
// carries the query's ID and question, RCODE NOERROR and at least one answer. Packets that
// are not that reply (wrong ID, not a response) are ignored until the deadline.
type DNSCheck struct {
	// Addr is connect_ip and connect_port.
	Addr netip.AddrPort
	// BindTo is bindto: the local address of the probe, when valid.
	BindTo netip.Addr
	// Source is bind_port, bind_if and fwmark.
	Source Source
	// Timeout is connect_timeout; zero or less means DefaultTimeout.
	Timeout time.Duration
	// Type is type: A, NS, CNAME, SOA, MX, TXT or AAAA; empty means SOA, keepalived's default.
	Type string
	// Name is name; empty means ".".
	Name string
}

var _ TimeoutChecker = DNSCheck{}

// Check sends the query and waits for its answer.
func (c DNSCheck) Check(ctx context.Context) error {
	q, err := c.question()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.CheckTimeout())
	defer cancel()
	var idb [2]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return fmt.Errorf("dns check: %w", err)
	}
	id := binary.BigEndian.Uint16(idb[:])
	msg := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{q},
	}
	query, err := msg.Pack()
	if err != nil {
		return fmt.Errorf("dns check: pack query: %w", err)
	}
	d := c.Source.dialer("udp", c.BindTo)
	conn, err := d.DialContext(ctx, "udp", c.Addr.String())
	if err != nil {
		return fmt.Errorf("dns check: dial %s: %w", c.Addr, err)
	}
	conn = boundConn(ctx, conn)
	defer conn.Close()
	if _, err := conn.Write(query); err != nil {
		return fmt.Errorf("dns query to %s: %w", c.Addr, err)
	}
	buf := make([]byte, 4096)
	for range 64 { // a bounded number of stray packets
		n, err := conn.Read(buf)
		if err != nil {
			return fmt.Errorf("dns reply from %s: %w", c.Addr, deadlineErr(err))
		}
		ok, err := dnsAnswers(buf[:n], id, q)
		if ok {
			return err
		}
	}
	return fmt.Errorf("dns reply from %s: %w: too many unrelated packets", c.Addr, ErrDNSReply)
}

// dnsAnswers reports whether pkt is the reply to query id for q and, if so, whether it
// answers it (nil) or not.
func dnsAnswers(pkt []byte, id uint16, q dnsmessage.Question) (bool, error) {
	var p dnsmessage.Parser
	h, err := p.Start(pkt)
	if err != nil || h.ID != id || !h.Response {
		return false, nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 || qs[0].Type != q.Type || qs[0].Class != q.Class ||
		!strings.EqualFold(qs[0].Name.String(), q.Name.String()) {
		return false, nil // not our question: a spoofed or stray packet
	}
	if h.RCode != dnsmessage.RCodeSuccess {
		return true, fmt.Errorf("%w: rcode %v", ErrDNSReply, h.RCode)
	}
	if _, err := p.AnswerHeader(); err != nil {
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return true, fmt.Errorf("%w: no answer", ErrDNSReply)
		}
		return true, fmt.Errorf("%w: %v", ErrDNSReply, err)
	}
	return true, nil
}

func (c DNSCheck) question() (dnsmessage.Question, error) {
	typ := strings.ToUpper(c.Type)
	if typ == "" {
		typ = "SOA"
	}
	t, ok := dnsTypes[typ]
	if !ok {
		return dnsmessage.Question{}, fmt.Errorf("dns check: unknown type %q", c.Type)
	}
	name := c.Name
	if name == "" {
		name = "."
	}
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	n, err := dnsmessage.NewName(name)
	if err != nil {
		return dnsmessage.Question{}, fmt.Errorf("dns check: name %q: %w", c.Name, err)
	}
	if !c.Addr.IsValid() {
		return dnsmessage.Question{}, fmt.Errorf("dns check: invalid address %v", c.Addr)
	}
	return dnsmessage.Question{Name: n, Type: t, Class: dnsmessage.ClassINET}, nil
}

// CheckTimeout returns Timeout, or DefaultTimeout when it is not set.
func (c DNSCheck) CheckTimeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// String returns e.g. "DNS_CHECK 10.0.0.2:53 SOA .".
func (c DNSCheck) String() string {
	return fmt.Sprintf("DNS_CHECK %s %s %s [%v %v]", c.Addr, c.Type, c.Name, bindString(c.BindTo), c.CheckTimeout())
}
