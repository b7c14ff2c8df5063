package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WriteMetrics writes st in the Prometheus text exposition format (version 0.0.4).
func WriteMetrics(w io.Writer, st Status) {
	m := &metricWriter{w: w}
	m.family("sluice_build_info", "gauge", "Always 1; the version label says which Sluice runs.")
	m.sample("sluice_build_info", labels("version", st.Version), 1)
	m.family("sluice_start_time_seconds", "gauge", "When the daemon started, in seconds since the epoch.")
	m.sample("sluice_start_time_seconds", "", unixSeconds(st.Started))
	if !st.Applied.IsZero() {
		m.family("sluice_last_apply_timestamp_seconds", "gauge", "When the data plane last accepted the desired state.")
		m.sample("sluice_last_apply_timestamp_seconds", "", unixSeconds(st.Applied))
	}

	type svcMetric struct {
		name, help string
		get        func(*Counters) uint64
	}
	counters := []svcMetric{
		{"packets_total", "Packets forwarded.", func(c *Counters) uint64 { return c.InPkts }},
		{"bytes_total", "Bytes forwarded, Ethernet frames included.", func(c *Counters) uint64 { return c.InBytes }},
		{"new_flows_total", "Flows (connections) scheduled.", func(c *Counters) uint64 { return c.Conns }},
	}
	for _, c := range counters {
		name := "sluice_service_" + c.name
		m.family(name, "counter", c.help+" Per virtual service.")
		for _, s := range st.Services {
			if s.Stats != nil {
				m.sample(name, svcLabels(s), float64(c.get(s.Stats)))
			}
		}
	}
	for _, c := range counters {
		name := "sluice_real_server_" + c.name
		m.family(name, "counter", c.help+" Per real server of a virtual service.")
		for _, s := range st.Services {
			for _, r := range s.RealServers {
				if r.Stats != nil {
					m.sample(name, rsLabels(s, r), float64(c.get(r.Stats)))
				}
			}
		}
	}
	m.family("sluice_real_server_healthy", "gauge", "1 when the real server's health checks pass, else 0.")
	for _, s := range st.Services {
		for _, r := range s.RealServers {
			m.sample("sluice_real_server_healthy", rsLabels(s, r), boolValue(r.Healthy))
		}
	}
	m.family("sluice_real_server_weight", "gauge", "The real server's weight in its virtual service.")
	for _, s := range st.Services {
		for _, r := range s.RealServers {
			m.sample("sluice_real_server_weight", rsLabels(s, r), float64(r.Weight))
		}
	}
	conns := []svcMetric{
		{"active_connections", "Connections established now (ipvsadm's ActiveConn).", func(c *Counters) uint64 { return c.ActiveConns }},
		{"inactive_connections", "Connections open now in any other state: closing, handshaking, UDP (ipvsadm's InActConn).", func(c *Counters) uint64 { return c.InactConns }},
	}
	for _, c := range conns {
		name := "sluice_real_server_" + c.name
		m.family(name, "gauge", c.help+" Per real server of a virtual service.")
		for _, s := range st.Services {
			for _, r := range s.RealServers {
				if r.Stats != nil {
					m.sample(name, rsLabels(s, r), float64(c.get(r.Stats)))
				}
			}
		}
	}
	if len(st.Verdicts) > 0 {
		m.family("sluice_dataplane_packets_total", "counter", "Packets the data plane saw, by verdict and reason (pass_*, drop_*, tx_*, redirect_*).")
		reasons := make([]string, 0, len(st.Verdicts))
		for r := range st.Verdicts {
			reasons = append(reasons, r)
		}
		slices.Sort(reasons)
		for _, r := range reasons {
			m.sample("sluice_dataplane_packets_total", labels("reason", r), float64(st.Verdicts[r]))
		}
	}
	writeHealthMetrics(m, st)
	writeVRRPMetrics(m, st)
}

type metricWriter struct{ w io.Writer }

func (m *metricWriter) family(name, typ, help string) {
	fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (m *metricWriter) sample(name, labels string, v float64) {
	fmt.Fprintf(m.w, "%s%s %s\n", name, labels, strconv.FormatFloat(v, 'g', -1, 64))
}

func svcLabels(s Service) string { return labels(svcKV(s)...) }

func rsLabels(s Service, r RealServer) string {
	return labels(append(svcKV(s), "real_server", r.Address.String(), "real_port", strconv.Itoa(int(r.Port)))...)
}

// svcKV names a service; a firewall-mark service (no VIP or port of its own) also by its mark,
// so two of them never share a series.
func svcKV(s Service) []string {
	kv := []string{"protocol", s.Protocol, "vip", s.VIP.String(), "port", strconv.Itoa(int(s.Port))}
	if s.FWMark != 0 {
		kv = append(kv, "fwmark", strconv.FormatUint(uint64(s.FWMark), 10))
	}
	return kv
}

// labels renders name/value pairs, escaping values as the exposition format requires.
func labels(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		v := strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(kv[i+1])
		fmt.Fprintf(&b, "%s=\"%s\"", kv[i], v)
	}
	b.WriteByte('}')
	return b.String()
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// ServeMetrics serves GET /metrics on addr until ctx is done. The server has read and write
// deadlines, so a slow or stalled scraper cannot hold connections open.
func ServeMetrics(ctx context.Context, ln net.Listener, status func() Status, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		WriteMetrics(w, status())
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics: %w", err)
	}
	return nil
}
