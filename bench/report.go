package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes results as a JSON array, one object per scenario.
func WriteJSON(w io.Writer, results []Result) error {
	if results == nil {
		results = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(results); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// WriteTable writes results as aligned tables: throughput, test-run costs, control plane.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmode\tfamily\tproto\tflows\tcores\tsluice Mpps\tceiling Mpps\t×ceiling\tnft Mpps\t×nft\tipvs Mpps\t×ipvs\tns/pkt\testablished kept\tper real server\tgenerator\t")
	for _, r := range results {
		if r.Kind != "throughput" {
			continue
		}
		kept := "-"
		if r.EstablishedKept != nil {
			kept = fmt.Sprintf("%.0f%%", 100**r.EstablishedKept)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Scenario, r.Mode, r.Family, r.Proto, r.Flows, r.Cores, num(r.Mpps, 3), num(r.CeilingMpps, 3), ratio(r.Mpps, r.CeilingMpps),
			num(r.NftMpps, 3), ratio(r.Mpps, r.NftMpps), num(r.IPVSMpps, 3), ratio(r.Mpps, r.IPVSMpps), num(r.NsPerPacket, 1), kept,
			perReal(r.PerReal), r.Generator)
	}
	if hasKind(results, "testrun") {
		fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t")
		fmt.Fprintln(tw, "test-run path\tmode\tfamily\t\t\t\tns/pkt\traw ns/pkt\t\t\t\t\t\t\t\t\t\t")
		for _, r := range results {
			if r.Kind == "testrun" {
				fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t%s\t%s\t\t\t\t\t\t\t\t\t\t\n", r.Scenario, r.Mode, r.Family, num(r.NsPerPacket, 1), num(r.RawNsPerPacket, 1))
			}
		}
	}
	if hasKind(results, "control") {
		fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t")
		fmt.Fprintln(tw, "control plane\t\t\t\t\t\tseconds\t\t\t\t\t\t\t\t\t\t\t")
		for _, r := range results {
			if r.Kind == "control" {
				fmt.Fprintf(tw, "%s\t\t\t\t\t\t%s\t\t\t\t\t\t\t\t\t\t\t\n", r.Scenario, num(r.Seconds, 4))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// hasKind reports whether results hold a row of kind.
func hasKind(results []Result, kind string) bool {
	for _, r := range results {
		if r.Kind == kind {
			return true
		}
	}
	return false
}

func num(p *float64, prec int) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, *p)
}

func ratio(a, b *float64) string {
	if a == nil || b == nil || *b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", *a / *b)
}

func perReal(n []uint64) string {
	var s []string
	for _, v := range n {
		s = append(s, fmt.Sprint(v))
	}
	return strings.Join(s, "/")
}

// WriteSVG draws the throughput results as a grouped bar chart: Mpps per scenario and core
// count, Sluice next to the ceiling, nftables DNAT and (when measured) IPVS.
func WriteSVG(w io.Writer, results []Result) error {
	var rows []Result
	maxV := 0.0
	for _, r := range results {
		if r.Kind != "throughput" {
			continue
		}
		rows = append(rows, r)
		for _, p := range []*float64{r.Mpps, r.CeilingMpps, r.NftMpps, r.IPVSMpps} {
			maxV = max(maxV, deref(p))
		}
	}
	if maxV == 0 {
		maxV = 1
	}
	const (
		left, top, barW, gap, plotH = 60, 40, 18, 24, 260
	)
	series := []struct {
		name, color string
		get         func(Result) *float64
	}{
		{"Sluice (XDP)", "#2b6cb0", func(r Result) *float64 { return r.Mpps }},
		{"ceiling (MAC swap + XDP_TX)", "#a0aec0", func(r Result) *float64 { return r.CeilingMpps }},
		{"nftables DNAT", "#dd6b20", func(r Result) *float64 { return r.NftMpps }},
	}
	for _, r := range rows {
		if r.IPVSMpps != nil {
			series = append(series, struct {
				name, color string
				get         func(Result) *float64
			}{"IPVS", "#38a169", func(r Result) *float64 { return r.IPVSMpps }})
			break
		}
	}
	groupW := len(series)*barW + gap
	width := left + len(rows)*groupW + 40
	height := top + plotH + 125
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">Mpps per scenario (higher is better)</text>`+"\n", left)
	base := top + plotH
	for i := 0; i <= 4; i++ {
		v := maxV * float64(i) / 4
		y := base - int(float64(plotH)*float64(i)/4)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#e2e8f0"/><text x="%d" y="%d" text-anchor="end">%.2f</text>`+"\n",
			left, y, width-20, y, left-6, y+4, v)
	}
	for g, r := range rows {
		x0 := left + g*groupW + gap/2
		for s, se := range series {
			v := se.get(r)
			if v == nil {
				continue
			}
			h := int(float64(plotH) * *v / maxV)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s: %.3f Mpps</title></rect>`+"\n",
				x0+s*barW, base-h, barW-2, h, se.color, html.EscapeString(se.name), *v)
		}
		flows := fmt.Sprintf("%d flows", r.Flows)
		if r.Flows == 0 {
			flows = "new flows"
		}
		cx := x0 + len(series)*barW/2
		for i, line := range []string{r.Scenario, r.Mode + " " + r.Family + " " + r.Proto, flows, fmt.Sprintf("%d core(s)", r.Cores)} {
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", cx, base+14+i*13, html.EscapeString(line))
		}
	}
	for s, se := range series {
		y := base + 73 + s*14
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			left, y-9, se.color, left+16, y, html.EscapeString(se.name))
	}
	b.WriteString("</svg>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write svg: %w", err)
	}
	return nil
}
