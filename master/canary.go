package master

import (
	"fmt"
	"math"
	"strings"

	"github.com/preforkd/preforkd/internal/aggregate"
)

// The HTTP series a canary is judged by: those of package metrics'
// middleware, which every Go worker serving HTTP through package server
// exports.
const (
	requestsSeries = "http_requests_total"
	durationSeries = "http_request_duration_seconds"
)

// httpFigures are a generation's HTTP counts: requests, 5xx answers, and
// the duration histogram's cumulative counts by upper bound (summed over
// slots and methods).
type httpFigures struct {
	requests, errors float64
	buckets          map[float64]float64
	seen             bool // the generation exports the HTTP series at all
}

// figuresOf sums c's HTTP series.
func figuresOf(c *aggregate.Carry) httpFigures {
	f := httpFigures{buckets: map[float64]float64{}}
	if c == nil {
		return f
	}
	for _, series := range c.Slots {
		for _, s := range series {
			switch {
			case s.Name == requestsSeries && s.Type == aggregate.TypeCounter:
				f.seen = true
				f.requests += float64(s.Value)
				if strings.HasPrefix(s.Labels["code"], "5") {
					f.errors += float64(s.Value)
				}
			case s.Name == durationSeries && s.Type == aggregate.TypeHistogram:
				for _, b := range s.Buckets {
					f.buckets[float64(b.UpperBound)] += float64(b.Count)
				}
			}
		}
	}
	return f
}

// since is f minus an earlier reading of the same generation.
func (f httpFigures) since(earlier httpFigures) httpFigures {
	d := httpFigures{requests: f.requests - earlier.requests, errors: f.errors - earlier.errors, buckets: map[float64]float64{}, seen: f.seen}
	for le, n := range f.buckets {
		d.buckets[le] = n - earlier.buckets[le]
	}
	return d
}

func (f httpFigures) errorRatio() float64 {
	if f.requests <= 0 {
		return 0
	}
	return f.errors / f.requests
}

// quantile estimates the q-quantile of the durations (aggregate.Quantile).
func (f httpFigures) quantile(q float64) float64 {
	b := make([]aggregate.Bucket, 0, len(f.buckets))
	for le, n := range f.buckets {
		b = append(b, aggregate.Bucket{UpperBound: aggregate.Float(le), Count: uint64(max(n, 0))})
	}
	return aggregate.Quantile(q, b)
}

// canaryRule is how a canary's HTTP figures are judged against the old
// generation's over the same window.
type canaryRule struct {
	max5xx      float64 // percentage points the canary's 5xx ratio may exceed the old one's by
	minRequests int     // fewer canary requests than this: the HTTP figures are not judged
	maxP99Ratio float64 // the canary's p99 may be at most this times the old one's; 0: not judged
}

// Rollback causes, the reason label of prefork_upgrade_rollbacks_total.
const (
	causeStart   = "start"   // the canary exited before it was ready
	causeCrash   = "crash"   // the canary exited while serving
	cause5xx     = "5xx"     // its 5xx ratio was too high
	causeLatency = "latency" // its p99 was too high
)

var rollbackCauses = []string{causeStart, causeCrash, cause5xx, causeLatency}

// judge returns "" if the canary passes, else the cause and a reason that
// gives the figures. note says why figures were not judged, if they were
// not.
func (r canaryRule) judge(canary, old httpFigures) (cause, reason, note string) {
	if canary.requests < float64(r.minRequests) {
		return "", "", fmt.Sprintf("the canary served %.0f HTTP requests, fewer than the %d needed to judge its figures (-canary-min-requests): judged on exits only", canary.requests, r.minRequests)
	}
	cr, or := canary.errorRatio(), old.errorRatio()
	if (cr-or)*100 > r.max5xx {
		return cause5xx, fmt.Sprintf("canary 5xx ratio %.1f%% (%.0f of %.0f requests) vs %.1f%% (%.0f of %.0f) for the old generation: more than %.1f points above (-canary-max-5xx)",
			cr*100, canary.errors, canary.requests, or*100, old.errors, old.requests, r.max5xx), ""
	}
	if r.maxP99Ratio > 0 && old.requests >= float64(r.minRequests) {
		cp, op := canary.quantile(0.99), old.quantile(0.99)
		if !math.IsNaN(cp) && !math.IsNaN(op) && op > 0 && cp > r.maxP99Ratio*op {
			return causeLatency, fmt.Sprintf("canary p99 latency %s vs %s for the old generation (%.0f and %.0f requests): %.1f× the old, more than %.1f× (-canary-max-p99-ratio)",
				secondsString(cp), secondsString(op), canary.requests, old.requests, cp/op, r.maxP99Ratio), ""
		}
	}
	return "", "", ""
}

func secondsString(s float64) string {
	switch {
	case s < 1e-3:
		return fmt.Sprintf("%.0fµs", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.1fms", s*1e3)
	}
	return fmt.Sprintf("%.2fs", s)
}

// summary is a short account of the figures, for the log.
func (f httpFigures) summary() string {
	p99 := f.quantile(0.99)
	p := "-"
	if !math.IsNaN(p99) {
		p = secondsString(p99)
	}
	return fmt.Sprintf("%.0f requests, %.1f%% 5xx, p99 %s", f.requests, f.errorRatio()*100, p)
}
