//go:build linux

package aggregate

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestGatherRoundTrip(t *testing.T) {
	agg := newAggregator(t, time.Second)
	m := newTestMetrics()
	m.c.Add(3)
	m.g.Set(7)
	m.h.Observe(0.05)
	m.h.Observe(0.5)
	startWorker(t, agg, 0, 4242, m.reg)

	want := `
# HELP job_duration_seconds Time a job took.
# TYPE job_duration_seconds histogram
job_duration_seconds_bucket{worker="0",le="0.1"} 1
job_duration_seconds_bucket{worker="0",le="1"} 2
job_duration_seconds_bucket{worker="0",le="+Inf"} 2
job_duration_seconds_sum{worker="0"} 0.55
job_duration_seconds_count{worker="0"} 2
# HELP jobs_total Jobs done.
# TYPE jobs_total counter
jobs_total{worker="0"} 3
# HELP queue_length Jobs queued.
# TYPE queue_length gauge
queue_length{worker="0"} 7
# HELP prefork_metrics_scrape_timeouts_total Scrapes in which the worker in a slot did not answer within the timeout (its last copy was served).
# TYPE prefork_metrics_scrape_timeouts_total counter
prefork_metrics_scrape_timeouts_total{worker="0"} 0
`
	if err := gatherAndCompare(agg, want,
		"jobs_total", "queue_length", "job_duration_seconds", "prefork_metrics_scrape_timeouts_total"); err != nil {
		t.Error(err)
	}
	mfs := gather(t, agg)
	if d := value(t, mfs, "prefork_metrics_worker_scrape_duration_seconds", "worker", "0"); d <= 0 || d >= 1 {
		t.Errorf("scrape duration = %v, want in (0, 1)", d)
	}
}

func TestCarryAcrossRestart(t *testing.T) {
	agg := newAggregator(t, time.Second)
	a := newTestMetrics()
	sa := startWorker(t, agg, 1, 100, a.reg)
	a.c.Add(10)
	a.g.Set(5)
	a.h.Observe(0.05)
	if got := value(t, gather(t, agg), "jobs_total", "worker", "1"); got != 10 {
		t.Fatalf("jobs_total = %v, want 10", got)
	}
	// Counted after the last scrape: only the final snapshot holds it.
	a.c.Add(2)
	a.h.Observe(0.5)
	if err := sa.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	start := time.Now()
	agg.Remove(100)
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Errorf("Remove took %v with the final snapshot already sent", d)
	}

	mfs := gather(t, agg)
	if got := value(t, mfs, "jobs_total", "worker", "1"); got != 12 {
		t.Errorf("carried jobs_total = %v, want 12 (the final snapshot)", got)
	}
	if m := find(mfs, "queue_length", "worker", "1"); m != nil {
		t.Errorf("dead worker's gauge still exported: %v", m)
	}

	b := newTestMetrics()
	startWorker(t, agg, 1, 101, b.reg)
	b.c.Add(3)
	b.g.Set(1)
	b.h.Observe(2)
	mfs = gather(t, agg)
	if got := value(t, mfs, "jobs_total", "worker", "1"); got != 15 {
		t.Errorf("jobs_total = %v, want 15 (12 carried + 3)", got)
	}
	if got := value(t, mfs, "queue_length", "worker", "1"); got != 1 {
		t.Errorf("queue_length = %v, want 1 (the live worker's)", got)
	}
	want := `
# HELP job_duration_seconds Time a job took.
# TYPE job_duration_seconds histogram
job_duration_seconds_bucket{worker="1",le="0.1"} 1
job_duration_seconds_bucket{worker="1",le="1"} 2
job_duration_seconds_bucket{worker="1",le="+Inf"} 3
job_duration_seconds_sum{worker="1"} 2.55
job_duration_seconds_count{worker="1"} 3
`
	if err := gatherAndCompare(agg, want, "job_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestRemoveWithoutFinalSnapshot(t *testing.T) {
	agg := newAggregator(t, time.Second)
	m, p := newPeer(t)
	agg.Add(2, 200, m)
	done := make(chan struct{})
	go func() {
		defer close(done)
		gather(t, agg)
	}()
	p.send(p.readSeq(), counterFamily("hits_total", 4))
	<-done

	// The peer is still open (a grandchild holding the socket, say):
	// Remove gives up after ~200ms and keeps the last seen value.
	start := time.Now()
	agg.Remove(200)
	if d := time.Since(start); d < removeWait || d > removeWait+300*time.Millisecond {
		t.Errorf("Remove took %v, want about %v", d, removeWait)
	}
	agg.Remove(200) // unknown now: no-op
	if got := value(t, gather(t, agg), "hits_total", "worker", "2"); got != 4 {
		t.Errorf("hits_total = %v, want 4", got)
	}
}

func TestStalledWorker(t *testing.T) {
	const timeout = 100 * time.Millisecond
	agg := newAggregator(t, timeout)
	m, p := newPeer(t)
	agg.Add(0, 300, m)

	async := func() <-chan float64 {
		ch := make(chan float64, 1)
		go func() {
			mfs, _ := agg.Gather()
			if find(mfs, "hits_total", "worker", "0") == nil {
				ch <- -1
				return
			}
			ch <- value(t, mfs, "hits_total", "worker", "0")
		}()
		return ch
	}

	res := async()
	p.send(p.readSeq(), counterFamily("hits_total", 5))
	if got := <-res; got != 5 {
		t.Fatalf("first scrape: hits_total = %v, want 5", got)
	}

	// The worker stops answering (SIGSTOP): the scrape returns in time with
	// the last copy and counts the timeout.
	start := time.Now()
	res = async()
	stale := p.readSeq()
	if got := <-res; got != 5 {
		t.Errorf("stalled scrape: hits_total = %v, want the last copy 5", got)
	}
	if d := time.Since(start); d > timeout+50*time.Millisecond {
		t.Errorf("stalled scrape took %v, want at most %v", d, timeout+50*time.Millisecond)
	}
	// A second scrape does not pile another request on the stopped worker.
	start = time.Now()
	mfs := gather(t, agg)
	if d := time.Since(start); d > timeout+50*time.Millisecond {
		t.Errorf("second stalled scrape took %v", d)
	}
	if got := value(t, mfs, "prefork_metrics_scrape_timeouts_total", "worker", "0"); got != 2 {
		t.Errorf("timeouts = %v, want 2", got)
	}
	p.noRequest(20 * time.Millisecond)

	// The worker resumes and answers the old request late, while a scrape
	// waits for it: that answer serves the scrape.
	res = async()
	p.noRequest(20 * time.Millisecond) // the old request is still outstanding
	p.send(stale, counterFamily("hits_total", 7))
	if got := <-res; got != 7 {
		t.Errorf("scrape during the late answer: hits_total = %v, want 7", got)
	}
	// The next scrape asks anew, and the stream is in step.
	res = async()
	seq := p.readSeq()
	if seq <= stale {
		t.Errorf("new request seq %d, want > %d", seq, stale)
	}
	p.send(seq, counterFamily("hits_total", 8))
	if got := <-res; got != 8 {
		t.Errorf("scrape after the late answer: hits_total = %v, want 8", got)
	}
	res = async()
	p.send(p.readSeq(), counterFamily("hits_total", 9))
	<-res
	// This scrape is not answered: it counts the third timeout.
	if got := value(t, gather(t, agg), "prefork_metrics_scrape_timeouts_total", "worker", "0"); got != 3 {
		t.Errorf("timeouts = %v, want 3", got)
	}
}

func TestSummaryCarry(t *testing.T) {
	agg := newAggregator(t, time.Second)
	newSummary := func() (*prometheus.Registry, prometheus.Summary) {
		reg := prometheus.NewRegistry()
		s := prometheus.NewSummary(prometheus.SummaryOpts{
			Name: "rpc_duration_seconds", Help: "RPC latency.", Objectives: map[float64]float64{0.5: 0.05},
		})
		reg.MustRegister(s)
		return reg, s
	}
	regA, a := newSummary()
	sa := startWorker(t, agg, 0, 1, regA)
	a.Observe(1)
	a.Observe(3)
	sa.Close()
	agg.Remove(1)
	want := `
# HELP rpc_duration_seconds RPC latency.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds_sum{worker="0"} 4
rpc_duration_seconds_count{worker="0"} 2
`
	if err := gatherAndCompare(agg, want, "rpc_duration_seconds"); err != nil {
		t.Errorf("carried summary: %v", err)
	}

	regB, b := newSummary()
	startWorker(t, agg, 0, 2, regB)
	b.Observe(10)
	want = `
# HELP rpc_duration_seconds RPC latency.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{worker="0",quantile="0.5"} 10
rpc_duration_seconds_sum{worker="0"} 14
rpc_duration_seconds_count{worker="0"} 3
`
	if err := gatherAndCompare(agg, want, "rpc_duration_seconds"); err != nil {
		t.Errorf("carried + live summary: %v", err)
	}
}

func TestAddReusedPid(t *testing.T) {
	agg := newAggregator(t, time.Second)
	m := newTestMetrics()
	m.c.Add(4)
	startWorker(t, agg, 0, 7, m.reg)
	gather(t, agg)
	// pid 7 died unnoticed and the kernel gave it to a new worker.
	n := newTestMetrics()
	n.c.Add(1)
	startWorker(t, agg, 0, 7, n.reg)
	if got := value(t, gather(t, agg), "jobs_total", "worker", "0"); got != 5 {
		t.Errorf("jobs_total = %v, want 5 (4 folded + 1)", got)
	}
}
