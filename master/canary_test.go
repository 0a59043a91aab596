package master

import (
	"math"
	"strings"
	"testing"

	"github.com/preforkd/preforkd/internal/aggregate"
)

// carryOf builds a carry with, per slot, ok 2xx and bad 5xx requests whose
// durations fall in the bucket of le (seconds).
func figuresCarry(ok, bad float64, le float64) *aggregate.Carry {
	bounds := []float64{0.005, 0.01, 0.1, 1, math.Inf(1)}
	var buckets []aggregate.Bucket
	for _, b := range bounds {
		n := uint64(0)
		if b >= le {
			n = uint64(ok + bad)
		}
		buckets = append(buckets, aggregate.Bucket{UpperBound: aggregate.Float(b), Count: n})
	}
	return &aggregate.Carry{Slots: map[int][]*aggregate.Series{
		0: {
			{Name: requestsSeries, Type: aggregate.TypeCounter, Labels: map[string]string{"code": "200", "method": "get"}, Value: aggregate.Float(ok)},
			{Name: requestsSeries, Type: aggregate.TypeCounter, Labels: map[string]string{"code": "500", "method": "get"}, Value: aggregate.Float(bad)},
			{Name: durationSeries, Type: aggregate.TypeHistogram, Labels: map[string]string{"method": "get"}, Count: uint64(ok + bad), Buckets: buckets},
			{Name: "other_total", Type: aggregate.TypeCounter, Value: 1e6},
		},
	}}
}

func TestFiguresOfAndSince(t *testing.T) {
	before := figuresOf(figuresCarry(100, 0, 0.005))
	after := figuresOf(figuresCarry(180, 20, 0.005))
	d := after.since(before)
	if d.requests != 100 || d.errors != 20 || d.errorRatio() != 0.2 {
		t.Errorf("window: %+v, ratio %g; want 100 requests, 20 errors", d, d.errorRatio())
	}
	if q := d.quantile(0.99); q <= 0 || q > 0.005 {
		t.Errorf("p99 %g, want within the first bucket (≤ 5ms)", q)
	}
	if q := figuresOf(nil).quantile(0.99); !math.IsNaN(q) {
		t.Errorf("p99 of nothing = %g, want NaN", q)
	}
}

func TestCanaryJudge(t *testing.T) {
	rule := canaryRule{max5xx: 1, minRequests: 100, maxP99Ratio: 3}
	old := figuresOf(figuresCarry(1000, 2, 0.005))
	for _, tc := range []struct {
		name   string
		canary httpFigures
		cause  string
		inText []string
	}{
		{"good", figuresOf(figuresCarry(300, 1, 0.005)), "", nil},
		{"20% errors", figuresOf(figuresCarry(240, 60, 0.005)), cause5xx, []string{"20.0% (60 of 300 requests)", "0.2% (2 of 1002)", "-canary-max-5xx"}},
		{"slow", figuresOf(figuresCarry(300, 0, 1)), causeLatency, []string{"p99", "-canary-max-p99-ratio"}},
		{"too few to judge", figuresOf(figuresCarry(10, 10, 1)), "", nil},
	} {
		cause, reason, note := rule.judge(tc.canary, old)
		if cause != tc.cause {
			t.Errorf("%s: cause %q (%s), want %q", tc.name, cause, reason, tc.cause)
		}
		for _, s := range tc.inText {
			if !strings.Contains(reason, s) {
				t.Errorf("%s: reason %q lacks %q", tc.name, reason, s)
			}
		}
		if tc.name == "too few to judge" && !strings.Contains(note, "fewer than the 100") {
			t.Errorf("no note on too few requests: %q", note)
		}
	}
	if cause, _, _ := (canaryRule{max5xx: 1, minRequests: 100}).judge(figuresOf(figuresCarry(300, 0, 1)), old); cause != "" {
		t.Errorf("latency judged with -canary-max-p99-ratio 0: %q", cause)
	}
}
