package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// chart geometry (pixels).
const (
	chartW, chartH         = 1000, 480
	padL, padR, padT, padB = 72, 72, 96, 58
	bucket                 = 250 * time.Millisecond
)

// chartSVG draws the live run: p99 latency per 250 ms bucket (log scale,
// left axis), failed requests per bucket (bars, right axis), and a marker
// at every SIGHUP and SIGKILL. Hand-written SVG, no dependencies.
func chartSVG(r *liveRun) string {
	p99, p50, fail, hiLat, hiFail := buckets(r)
	n := len(fail)
	// Log axis from 0.1 ms to the decade above the slowest bucket.
	loExp, hiExp := -1.0, math.Ceil(math.Log10(hiLat))
	failTop := niceTop(hiFail)
	pw, ph := float64(chartW-padL-padR), float64(chartH-padT-padB)
	secs := r.end.Seconds()
	x := func(t float64) float64 { return padL + t/secs*pw }
	yLat := func(ms float64) float64 {
		v := math.Log10(math.Max(ms, math.Pow(10, loExp)))
		return padT + ph - (v-loExp)/(hiExp-loExp)*ph
	}
	yFail := func(v float64) float64 { return padT + ph - v/float64(failTop)*ph }

	var sb strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&sb, format, a...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="%d" y="22" font-size="16" font-weight="bold">preforkd under load: %d upgrades (SIGHUP), then %d worker SIGKILLs</text>`+"\n",
		padL, len(r.upgrades), len(r.kills))
	p(`<text x="%d" y="42" fill="#444">%d workers; %d keep-alive + %d fresh-connection clients at %.0f req/s each, never retrying; go run ./bench</text>`+"\n",
		padL, r.workers, r.cfg.KeepAlive, r.cfg.Fresh, r.cfg.Rate)
	chartLegend(p)
	// Phases.
	p(`<text x="%.1f" y="%d" fill="#555">upgrades</text>`+"\n", x(0)+4, padT-8)
	p(`<text x="%.1f" y="%d" fill="#555">worker kills</text>`+"\n", x(r.crashFrom.Seconds())+4, padT-8)
	// Grid and left axis (decades).
	for e := loExp; e <= hiExp; e++ {
		v := math.Pow(10, e)
		y := yLat(v)
		p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/>`+"\n", padL, y, chartW-padR, y)
		p(`<text x="%d" y="%.1f" text-anchor="end">%s ms</text>`+"\n", padL-6, y+4, fmtMs(v))
	}
	// Right axis.
	for i := 0; i <= 4; i++ {
		v := float64(failTop) * float64(i) / 4
		p(`<text x="%d" y="%.1f">%g</text>`+"\n", chartW-padR+6, yFail(v)+4, v)
	}
	// x axis.
	step := 5.0
	for t := 0.0; t <= secs; t += step {
		p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#999"/>`+"\n", x(t), padT+int(ph), x(t), padT+int(ph)+5)
		p(`<text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x(t), padT+int(ph)+19, t)
	}
	p(`<text x="%.1f" y="%d" text-anchor="middle">seconds since the load began (buckets of %v)</text>`+"\n", padL+pw/2, chartH-14, bucket)
	p(`<text transform="translate(18,%.1f) rotate(-90)" text-anchor="middle">p99 latency per bucket</text>`+"\n", padT+ph/2)
	p(`<text transform="translate(%d,%.1f) rotate(90)" text-anchor="middle">failed requests per bucket</text>`+"\n", chartW-16, padT+ph/2)
	p(`<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", padL, padT, pw, ph)
	// Failure bars.
	bw := math.Max(1, pw/float64(n)-1)
	for i, f := range fail {
		if f == 0 {
			continue
		}
		t := (time.Duration(i) * bucket).Seconds()
		p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#d62728" fill-opacity="0.75"><title>%d failed</title></rect>`+"\n",
			x(t), yFail(float64(f)), bw, padT+ph-yFail(float64(f)), f)
	}
	// Markers.
	for _, u := range r.upgrades {
		p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%.0f" stroke="#2ca02c" stroke-width="2" stroke-dasharray="4,3"/>`+"\n", x(u.at.Seconds()), padT, x(u.at.Seconds()), padT+ph)
	}
	for _, k := range r.kills {
		p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%.0f" stroke="#ff7f0e" stroke-width="1" stroke-opacity="0.8"/>`+"\n", x(k.at.Seconds()), padT, x(k.at.Seconds()), padT+ph)
	}
	// Latency lines.
	p(`<polyline fill="none" stroke="#9aa5b1" stroke-width="1.5" points="%s"/>`+"\n", points(p50, x, yLat))
	p(`<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="%s"/>`+"\n", points(p99, x, yLat))
	p("</svg>\n")
	return sb.String()
}

// buckets groups the samples by time: p99 and p50 latency in ms (0: no
// sample) and failures per bucket, and the largest of each.
func buckets(r *liveRun) (p99, p50 []float64, fail []int, hiLat float64, hiFail int) {
	n := int(r.end/bucket) + 1
	lat := make([][]time.Duration, n)
	fail = make([]int, n)
	for _, s := range r.samples {
		i := int(s.start / bucket)
		if i >= n {
			continue
		}
		if s.ok {
			lat[i] = append(lat[i], s.lat)
		} else {
			fail[i]++
		}
	}
	p99, p50 = make([]float64, n), make([]float64, n)
	hiLat = 1.0
	for i := range lat {
		if len(lat[i]) > 0 {
			p99[i] = float64(pctD(lat[i], 99)) / 1e6
			p50[i] = float64(pctD(lat[i], 50)) / 1e6
			hiLat = math.Max(hiLat, p99[i])
		}
		hiFail = max(hiFail, fail[i])
	}
	return p99, p50, fail, hiLat, hiFail
}

// chartLegend draws the legend line.
func chartLegend(p func(format string, a ...any)) {
	lx := float64(padL)
	p(`<line x1="%.0f" y1="64" x2="%.0f" y2="64" stroke="#1f5fbf" stroke-width="2"/><text x="%.0f" y="68">p99 latency (left, log)</text>`+"\n", lx, lx+24, lx+30)
	lx += 180
	p(`<line x1="%.0f" y1="64" x2="%.0f" y2="64" stroke="#9aa5b1" stroke-width="1.5"/><text x="%.0f" y="68">p50 latency</text>`+"\n", lx, lx+24, lx+30)
	lx += 115
	p(`<rect x="%.0f" y="58" width="14" height="12" fill="#d62728" fill-opacity="0.75"/><text x="%.0f" y="68">failed requests (right)</text>`+"\n", lx, lx+20)
	lx += 175
	p(`<line x1="%.0f" y1="58" x2="%.0f" y2="72" stroke="#2ca02c" stroke-width="2" stroke-dasharray="4,3"/><text x="%.0f" y="68">SIGHUP (upgrade)</text>`+"\n", lx, lx, lx+8)
	lx += 135
	p(`<line x1="%.0f" y1="58" x2="%.0f" y2="72" stroke="#ff7f0e" stroke-width="1.5"/><text x="%.0f" y="68">SIGKILL (worker)</text>`+"\n", lx, lx, lx+8)
}

// points is a polyline through the buckets that had samples (at their
// middles).
func points(v []float64, x, y func(float64) float64) string {
	var sb strings.Builder
	for i, ms := range v {
		if ms == 0 {
			continue
		}
		t := (time.Duration(i)*bucket + bucket/2).Seconds()
		fmt.Fprintf(&sb, "%.1f,%.1f ", x(t), y(ms))
	}
	return strings.TrimSpace(sb.String())
}

// niceTop is a round axis maximum ≥ 1.25 v (at least 4).
func niceTop(v int) int {
	for _, t := range []int{4, 8, 20, 40, 80, 200, 400, 800, 2000, 4000, 8000, 20000} {
		if v*5 <= t*4 { // headroom above the tallest bar
			return t
		}
	}
	return v
}

func fmtMs(v float64) string {
	if v < 1 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}
