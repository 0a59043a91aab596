package main

import (
	"math"
	"testing"
)

const tracesFixture = `File: single
Type: cpu
Duration: 5s, Total samples = 100ms (2.00%)
-----------+-------------------------------------------------------
      50ms   internal/runtime/syscall/linux.Syscall6
             syscall.RawSyscall6
             net.(*conn).Write
             net/http.(*response).finishRequest
-----------+-------------------------------------------------------
      20ms   time.runtimeNow
             time.Now (inline)
             main.run.(*HTTPMetrics).Wrap.func2
             net/http.serverHandler.ServeHTTP
-----------+-------------------------------------------------------
      20ms   github.com/prometheus/client_golang/prometheus.(*histogram).Observe
             main.run.(*HTTPMetrics).Wrap.func2.1
-----------+-------------------------------------------------------
      10ms   runtime.futex
             runtime.mcall
-----------+-------------------------------------------------------
`

// TestParseTraces charges each sample to its first caller that is not
// shared machinery, and counts the metrics' samples as ours.
func TestParseTraces(t *testing.T) {
	p := cpuProfile{by: map[string]float64{}}
	parseTraces(tracesFixture, &p)
	want := map[string]float64{
		"syscall.RawSyscall6":                0.05,
		"main.run.(*HTTPMetrics).Wrap.func2": 0.02,
		"github.com/prometheus/client_golang/prometheus.(*histogram).Observe": 0.02,
		"runtime (scheduler, GC)": 0.01,
	}
	if math.Abs(p.total-0.1) > 1e-9 || len(p.by) != len(want) {
		t.Fatalf("got total %v, %v; want 0.1, %v", p.total, p.by, want)
	}
	for fn, v := range want {
		if math.Abs(p.by[fn]-v) > 1e-9 {
			t.Errorf("%s: got %v, want %v", fn, p.by[fn], v)
		}
	}
	if got := p.ours(); math.Abs(got-0.4) > 1e-9 {
		t.Errorf("ours: got %v, want 0.4", got)
	}
	base := cpuProfile{by: map[string]float64{"syscall.RawSyscall6": 1}}
	if got := p.only(base); len(got) != 3 || got[0] != "github.com/prometheus/client_golang/prometheus.(*histogram).Observe" {
		t.Errorf("only: got %v", got)
	}
}
