package dashboards

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/shiploop/shiploop/services/dashboards/dora"
)

// doraCharts draws the period week by week as inline SVG: deploys (and
// failed ones), median lead time, change failure rate.
func doraCharts(in dora.Input, from, to time.Time) []template.HTML {
	var weeks []time.Time
	for t := from; t.Before(to); t = t.Add(7 * 24 * time.Hour) {
		weeks = append(weeks, t)
	}
	if len(weeks) == 0 {
		return nil
	}
	deploys := make([]float64, len(weeks))
	failed := make([]float64, len(weeks))
	lead := make([]float64, len(weeks))
	cfr := make([]float64, len(weeks))
	for i, w := range weeks {
		end := w.Add(7 * 24 * time.Hour)
		if end.After(to) {
			end = to
		}
		wi := in
		wi.From, wi.To = w, end
		r := dora.Compute(wi)
		deploys[i], failed[i] = float64(r.Deploys), float64(r.FailedDeploys)
		if r.HasLeadTime {
			lead[i] = r.LeadTime.Hours()
		}
		cfr[i] = 100 * r.ChangeFailureRate
	}
	labels := make([]string, len(weeks))
	for i, w := range weeks {
		labels[i] = w.Format("Jan 2")
	}
	return []template.HTML{
		barChart("Deploys per week (failed in red)", labels, deploys, failed, ""),
		barChart("Median lead time per week (hours)", labels, lead, nil, "h"),
		barChart("Change failure rate per week (%)", labels, cfr, nil, "%"),
	}
}

func barChart(title string, labels []string, values, overlay []float64, unit string) template.HTML {
	const w, h, left, bottom, top = 640, 180, 40, 30, 24
	maxV := 0.0
	for _, v := range values {
		maxV = math.Max(maxV, v)
	}
	if maxV == 0 {
		maxV = 1
	}
	plotW, plotH := float64(w-left-10), float64(h-bottom-top)
	bw := plotW / float64(len(values))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`, w, h, w, h, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<title>%s</title><text x="%d" y="16" font-size="13" font-weight="bold">%s</text>`, template.HTMLEscapeString(title), left, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`, left, h-bottom, w-10, h-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="10" text-anchor="end">%s%s</text>`, left-4, top+8, trimNum(maxV), unit)
	for i, v := range values {
		x := float64(left) + float64(i)*bw + bw*0.15
		bh := plotH * v / maxV
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#007ec6"><title>%s: %s%s</title></rect>`,
			x, float64(h-bottom)-bh, bw*0.7, bh, labels[i], trimNum(v), unit)
		if overlay != nil && overlay[i] > 0 {
			oh := plotH * overlay[i] / maxV
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#dd4343"><title>%s: %s failed</title></rect>`,
				x, float64(h-bottom)-oh, bw*0.7, oh, labels[i], trimNum(overlay[i]))
		}
		if len(values) <= 13 || i%int(math.Ceil(float64(len(values))/13)) == 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%s</text>`, x+bw*0.35, h-bottom+14, labels[i])
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers and escaped text only
}

func trimNum(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
