//go:build linux

package integration

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// scrape fetches the master's /metrics and parses it.
func (m *Master) scrape(t testing.TB) (map[string]*dto.MetricFamily, string, time.Duration) {
	t.Helper()
	began := time.Now()
	resp, err := fresh().Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", m.Metrics))
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams, string(body), took
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// One scrape holds the master's prefork_* families and, for each of
// workers 0, 1 and 2, Go runtime and HTTP series; promlint finds nothing.
func TestMetricsEndpoint(t *testing.T) {
	m := startMaster(t, Opts{Workers: 3})
	m.WaitWorkers(3, 20*time.Second)
	load := startLoad(t, m.URL("/"), 4, Fresh)
	time.Sleep(time.Second)
	load.Stop()
	fams, body, took := m.scrape(t)
	t.Logf("scrape: %d families, %d bytes, %v", len(fams), len(body), took)
	for _, name := range []string{"prefork_workers", "prefork_workers_desired", "prefork_generation", "prefork_worker_memory_bytes",
		"prefork_worker_start_duration_seconds", "prefork_state_size_bytes", "prefork_upgrades_total", "prefork_master_process_cpu_seconds_total"} {
		if fams[name] == nil {
			t.Errorf("no %s family", name)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes_total", "process_cpu_seconds_total",
		"http_requests_total", "http_request_duration_seconds", "http_requests_in_flight"} {
		f := fams[name]
		if f == nil {
			t.Errorf("no %s family", name)
			continue
		}
		seen := map[string]bool{}
		for _, mm := range f.GetMetric() {
			seen[label(mm, "worker")] = true
		}
		for _, w := range []string{"0", "1", "2"} {
			if !seen[w] {
				t.Errorf("%s has no series for worker=%q (have %v)", name, w, seen)
			}
		}
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	// /healthz: 200 while a worker is ready.
	if code, _, err := get(fresh(), fmt.Sprintf("http://127.0.0.1:%d/healthz", m.Metrics)); err != nil || code != 200 {
		t.Errorf("/healthz: %d %v", code, err)
	}
}

// totals sums every counter and histogram/summary count over workers:
// series key without the worker label → value.
func totals(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, f := range fams {
		for _, mm := range f.GetMetric() {
			if label(mm, "worker") == "" {
				continue // the master's own process: not a worker series
			}
			var parts []string
			for _, l := range mm.GetLabel() {
				if l.GetName() != "worker" {
					parts = append(parts, l.GetName()+"="+l.GetValue())
				}
			}
			sort.Strings(parts)
			key := name + "{" + strings.Join(parts, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] += mm.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key+"_count"] += float64(mm.GetHistogram().GetSampleCount())
			case dto.MetricType_SUMMARY:
				out[key+"_count"] += float64(mm.GetSummary().GetSampleCount())
			}
		}
	}
	return out
}

// Scraping every 150 ms through 3 worker SIGKILLs and 1 upgrade under load,
// the sum over workers of every counter and histogram count never
// decreases from one scrape to the next.
func TestCountersNeverDecrease(t *testing.T) {
	m := startMaster(t, Opts{Workers: 3, Args: []string{"-stable-period", "200ms"}})
	m.WaitWorkers(3, 20*time.Second)
	load := startLoad(t, m.URL("/"), 3, Fresh)
	ka := startLoad(t, m.URL("/"), 2, KeepAlive)
	var (
		mu        sync.Mutex
		decreases []string
		scrapes   int
		maxReqs   float64
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var prev map[string]float64
		tick := time.NewTicker(150 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			resp, err := fresh().Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", m.Metrics))
			if err != nil {
				continue // a hand-over in progress: the socket stays, but retry
			}
			p := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := p.TextToMetricFamilies(resp.Body)
			resp.Body.Close()
			if err != nil {
				continue
			}
			cur := totals(fams)
			mu.Lock()
			scrapes++
			for k, v := range prev {
				if nv, ok := cur[k]; !ok || nv < v {
					if len(decreases) < 20 {
						decreases = append(decreases, fmt.Sprintf("%s: %g -> %g (present %v)", k, v, nv, ok))
					}
				}
			}
			maxReqs = max(maxReqs, cur[`http_requests_total{code=200,method=get}`])
			mu.Unlock()
			prev = cur
		}
	}()
	for i := 0; i < 3; i++ {
		time.Sleep(700 * time.Millisecond)
		st := m.WaitWorkers(3, 20*time.Second)
		unix.Kill(st.Slots[i].PID, unix.SIGKILL)
	}
	time.Sleep(700 * time.Millisecond)
	m.WaitWorkers(3, 20*time.Second)
	m.Upgrade("v2", 3)
	time.Sleep(1500 * time.Millisecond) // through the old master's exit
	close(stop)
	<-done
	load.Stop()
	ka.Stop()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d scrapes; http_requests_total summed over workers reached %.0f (clients counted %d)", scrapes, maxReqs, load.ok.Load()+ka.ok.Load())
	if scrapes < 20 {
		t.Errorf("only %d scrapes", scrapes)
	}
	for _, d := range decreases {
		t.Errorf("decreased: %s", d)
	}
	if maxReqs < float64(load.ok.Load()+ka.ok.Load())*0.5 {
		t.Errorf("carried request count %.0f is far below the %d requests served", maxReqs, load.ok.Load()+ka.ok.Load())
	}
}

// A worker stopped with SIGSTOP doesn't make /metrics slower than the
// scrape timeout: its last copy is served, and the timeout is counted.
func TestMetricsStoppedWorker(t *testing.T) {
	m := startMaster(t, Opts{Workers: 3})
	st := m.WaitWorkers(3, 20*time.Second)
	m.scrape(t)
	victim := st.Slots[1].PID
	unix.Kill(victim, unix.SIGSTOP)
	defer unix.Kill(victim, unix.SIGCONT)
	var worst time.Duration
	var fams map[string]*dto.MetricFamily
	for i := 0; i < 3; i++ {
		var took time.Duration
		fams, _, took = m.scrape(t)
		worst = max(worst, took)
	}
	t.Logf("with worker 1 stopped: slowest of 3 scrapes %v", worst)
	if worst > 1500*time.Millisecond {
		t.Errorf("a scrape took %v with a stopped worker; the timeout is 500ms", worst)
	}
	found := false
	for _, mm := range fams["go_goroutines"].GetMetric() {
		found = found || label(mm, "worker") == "1"
	}
	if !found {
		t.Errorf("the stopped worker's last copy is not served")
	}
	timeouts := 0.0
	for name, f := range fams {
		if strings.Contains(name, "timeout") {
			for _, mm := range f.GetMetric() {
				if label(mm, "worker") == "1" {
					timeouts += mm.GetCounter().GetValue()
				}
			}
		}
	}
	if timeouts < 1 {
		t.Errorf("scrape timeouts of worker 1 not counted")
	}
}

// BenchmarkScrape8 measures /metrics with 8 workers (goal: p50 ≤ 20 ms).
func BenchmarkScrape8(b *testing.B) {
	m := startMaster(b, Opts{Workers: 8})
	m.WaitWorkers(8, 30*time.Second)
	c := fresh()
	var ds []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		began := time.Now()
		if code, _, err := get(c, fmt.Sprintf("http://127.0.0.1:%d/metrics", m.Metrics)); err != nil || code != 200 {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(began))
	}
	b.StopTimer()
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, "p99-ms")
}
