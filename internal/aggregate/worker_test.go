//go:build linux

package aggregate

import (
	"github.com/preforkd/preforkd/metrics"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// serveSome sends a few requests through hm's middleware.
func serveSome(hm *metrics.HTTPMetrics, n int) {
	h := hm.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ok"))
	}))
	for i := range n {
		path := "/"
		if i%3 == 0 {
			path = "/missing"
		}
		method := http.MethodGet
		if i%4 == 0 {
			method = http.MethodPost
		}
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, path, nil))
	}
}

func TestLintRealisticSetup(t *testing.T) {
	agg := newAggregator(t, time.Second)
	for slot := range 2 {
		reg := metrics.NewWorkerRegistry()
		hm := metrics.NewHTTPMetrics(reg)
		serveSome(hm, 10+slot)
		startWorker(t, agg, slot, 1000+slot, reg)
	}
	mfs := gather(t, agg)
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// Worker 0 served 10 requests: 404s are 0,3,6,9, POSTs 0,4,8.
	if got := value(t, mfs, "http_requests_total", "code", "404", "method", "post", "worker", "0"); got != 1 {
		t.Errorf(`http_requests_total{code="404",method="post",worker="0"} = %v, want 1`, got)
	}
	if got := value(t, mfs, "http_request_duration_seconds", "method", "get", "worker", "1"); got != 8 {
		t.Errorf(`http_request_duration_seconds_count{method="get",worker="1"} = %v, want 8`, got)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds", "http_requests_in_flight"} {
		if find(mfs, name, "worker", "1") == nil {
			t.Errorf("no %s{worker=1}", name)
		}
	}
}

func TestHTTPMetricsTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := metrics.NewHTTPMetrics(reg), metrics.NewHTTPMetrics(reg)
	serveSome(a, 1)
	serveSome(b, 1)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if got := value(t, mfs, "http_requests_total", "code", "404", "method", "post"); got != 2 {
		t.Errorf("shared counter = %v, want 2", got)
	}
	metrics.NewHTTPMetrics(nil) // registers nothing, must not panic
}

func TestWorkerServerCloseIdempotentAndMasterGone(t *testing.T) {
	m, w := socketpair(t)
	m.Close() // the master is gone
	s := NewWorkerServer(w, newTestMetrics().reg)
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Close to a gone master returned nil, want the write error")
		}
		if err2 := s.Close(); err2 != err {
			t.Errorf("second Close = %v, want %v", err2, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
}

func TestTwoWorkersInOneSlot(t *testing.T) {
	agg := newAggregator(t, time.Second)
	old, repl := newTestMetrics(), newTestMetrics()
	old.c.Add(5)
	old.g.Set(1)
	old.h.Observe(0.05)
	repl.c.Add(2)
	repl.g.Set(9)
	repl.h.Observe(0.5)
	startWorker(t, agg, 3, 1, old.reg)
	startWorker(t, agg, 3, 2, repl.reg)
	mfs := gather(t, agg)
	if got := value(t, mfs, "jobs_total", "worker", "3"); got != 7 {
		t.Errorf("jobs_total = %v, want 7 (both workers)", got)
	}
	if got := value(t, mfs, "queue_length", "worker", "3"); got != 9 {
		t.Errorf("queue_length = %v, want 9 (the newer worker's)", got)
	}
	if got := value(t, mfs, "job_duration_seconds", "worker", "3"); got != 2 {
		t.Errorf("histogram count = %v, want 2", got)
	}
	tot := agg.Totals()
	if got := tot.Slots[3][indexOf(t, tot.Slots[3], "jobs_total")].Value; got != 7 {
		t.Errorf("Totals jobs_total = %v, want 7", got)
	}
}

func TestWorkerLabelAndTypeConflicts(t *testing.T) {
	agg := newAggregator(t, time.Second)
	m0, p0 := newPeer(t)
	m1, p1 := newPeer(t)
	agg.Add(0, 1, m0)
	agg.Add(1, 2, m1)
	labelled := counterFamily("hits_total", 3)
	labelled.Metric[0].Label = []*dto.LabelPair{{Name: new("worker"), Value: new("mine")}}
	gauge := &dto.MetricFamily{
		Name: new("hits_total"), Help: new("Not a counter."), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: new(1.0)}}},
	}
	done := make(chan []*dto.MetricFamily)
	go func() {
		mfs, _ := agg.Gather()
		done <- mfs
	}()
	p0.send(p0.readSeq(), labelled)
	p1.send(p1.readSeq(), gauge)
	mfs := <-done
	if got := value(t, mfs, "hits_total", "exported_worker", "mine", "worker", "0"); got != 3 {
		t.Errorf("renamed series = %v, want 3", got)
	}
	if m := find(mfs, "hits_total", "worker", "1"); m != nil {
		t.Errorf("series of the conflicting type kept: %v", m)
	}
	if problems, _ := promlint.NewWithMetricFamilies(mfs).Lint(); len(problems) > 0 {
		t.Errorf("lint: %v", problems)
	}
}

func TestAggregatorClose(t *testing.T) {
	agg := NewAggregator(AggregatorOptions{Timeout: time.Second})
	m := newTestMetrics()
	m.c.Add(2)
	s := startWorker(t, agg, 0, 1, m.reg)
	gather(t, agg)
	agg.Close()
	agg.Close()
	start := time.Now()
	if got := value(t, gather(t, agg), "jobs_total", "worker", "0"); got != 2 {
		t.Errorf("after Close: jobs_total = %v, want the last copy 2", got)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Gather after Close took %v", d)
	}
	_, w := socketpair(t)
	agg.Add(1, 2, w) // closes w
	if err := w.Close(); err == nil {
		t.Error("Add after Close did not close its file")
	}
	s.Close()
	agg.Remove(1)
	if got := value(t, gather(t, agg), "jobs_total", "worker", "0"); got != 2 {
		t.Errorf("after Remove: jobs_total = %v, want 2", got)
	}
}
