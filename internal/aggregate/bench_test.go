//go:build linux

package aggregate

import (
	"github.com/preforkd/preforkd/metrics"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// frozen is a Gatherer that returns the same families each time: it takes
// the workers' own gathering cost out of the measurement.
type frozen []*dto.MetricFamily

func (f frozen) Gather() ([]*dto.MetricFamily, error) { return f, nil }

// benchGather measures one scrape of n workers, each serving
// metrics.NewWorkerRegistry() and HTTP metrics over a real socketpair, answered by
// a WorkerServer in this process. ns/op is the scrape latency.
func benchGather(b *testing.B, n int, freeze bool) {
	agg := NewAggregator(AggregatorOptions{Timeout: 5 * time.Second})
	defer agg.Close()
	servers := make([]*WorkerServer, n)
	for slot := range n {
		reg := metrics.NewWorkerRegistry()
		serveSome(metrics.NewHTTPMetrics(reg), 50)
		var g prometheus.Gatherer = reg
		if freeze {
			mfs, err := reg.Gather()
			if err != nil {
				b.Fatal(err)
			}
			g = frozen(mfs)
		}
		m, w := socketpair(b)
		agg.Add(slot, 10000+slot, m)
		servers[slot] = NewWorkerServer(w, g)
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	mfs, _ := agg.Gather()
	series := 0
	for _, mf := range mfs {
		series += len(mf.GetMetric())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := agg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(series), "series")
	mfs, _ = agg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "prefork_metrics_scrape_timeouts_total" {
			for _, m := range mf.GetMetric() {
				if v := m.GetCounter().GetValue(); v != 0 {
					b.Errorf("%v timeouts during the benchmark", v)
				}
			}
		}
	}
}

func BenchmarkGather(b *testing.B)   { benchGather(b, 8, false) }
func BenchmarkGather32(b *testing.B) { benchGather(b, 32, false) }

// The same with frozen registries: the master's side (request, merge) plus
// the workers' encoding, without their Go/process collectors. Every frame
// equals the previous one, so the master decodes nothing after the first:
// the floor of a scrape of idle workers.
func BenchmarkGatherFrozen(b *testing.B)   { benchGather(b, 8, true) }
func BenchmarkGatherFrozen32(b *testing.B) { benchGather(b, 32, true) }
