//go:build linux

package master

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// A worker's memory is read at most once per memMaxAge; the age of the
// oldest reading served is exported.
func TestCollectMemoryReusesRecentReadings(t *testing.T) {
	var mu sync.Mutex
	reads := map[int]int{}
	m := &master{readMemory: func(pid int) (Memory, error) {
		mu.Lock()
		defer mu.Unlock()
		reads[pid]++
		if pid == 3 {
			return Memory{}, errors.New("gone")
		}
		return Memory{RSS: uint64(pid) << 20}, nil
	}}
	c := &masterCollector{m: m}
	slots := []SlotStatus{{Slot: 0, PID: 1}, {Slot: 1, PID: 2}, {Slot: 2, PID: 3}, {Slot: 3}}
	collect := func() (rss map[string]float64, age float64, hasAge bool) {
		ch := make(chan prometheus.Metric, 100)
		c.collectMemory(ch, slots)
		close(ch)
		rss = map[string]float64{}
		for pm := range ch {
			var d dto.Metric
			if err := pm.Write(&d); err != nil {
				t.Fatal(err)
			}
			switch pm.Desc() {
			case descMemAge:
				age, hasAge = d.GetGauge().GetValue(), true
			case descMemory:
				if d.GetLabel()[0].GetValue() == "rss" {
					rss[d.GetLabel()[1].GetValue()] = d.GetGauge().GetValue()
				}
			}
		}
		return rss, age, hasAge
	}
	rss, age, hasAge := collect()
	if rss["0"] != 1<<20 || rss["1"] != 2<<20 || len(rss) != 2 {
		t.Fatalf("rss by worker = %v, want workers 0 and 1 (1 and 2 MiB)", rss)
	}
	if !hasAge || age < 0 || age > 0.5 {
		t.Errorf("memory age = %v (present %v), want a fresh reading", age, hasAge)
	}
	collect()
	mu.Lock()
	if reads[1] != 1 || reads[2] != 1 || reads[3] != 2 {
		t.Errorf("reads by pid after two scrapes = %v, want 1, 1 and 2 (a failed read is retried)", reads)
	}
	mu.Unlock()
	time.Sleep(memMaxAge + 50*time.Millisecond)
	collect()
	mu.Lock()
	if reads[1] != 2 || reads[2] != 2 {
		t.Errorf("reads by pid after memMaxAge = %v, want 2 each", reads)
	}
	mu.Unlock()
}

type fixedGatherer struct {
	mfs []*dto.MetricFamily
	err error
}

func (g fixedGatherer) Gather() ([]*dto.MetricFamily, error) { return g.mfs, g.err }

func family(name, help string, v float64) *dto.MetricFamily {
	return &dto.MetricFamily{Name: new(name), Help: new(help), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: new(v)}}}}
}

// The master's families and the workers' are joined sorted by name; a
// worker family named like a master's is dropped, not an error.
func TestScrapeGathererJoins(t *testing.T) {
	g := scrapeGatherer{
		own:     fixedGatherer{mfs: []*dto.MetricFamily{family("b", "master", 1), family("d", "master", 2)}},
		workers: fixedGatherer{mfs: []*dto.MetricFamily{family("a", "worker", 3), family("b", "worker", 4), family("c", "worker", 5)}},
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, mf.GetName()+"="+mf.GetHelp())
	}
	if want := "a=worker b=master c=worker d=master"; strings.Join(got, " ") != want {
		t.Errorf("families %v, want %s", got, want)
	}
	g.workers = fixedGatherer{err: errors.New("boom")}
	if _, err := g.Gather(); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("error %v, want the workers' error", err)
	}
}

func TestAcceptsGzip(t *testing.T) {
	for _, c := range []struct {
		h    []string
		want bool
	}{
		{nil, false},
		{[]string{"gzip"}, true},
		{[]string{"identity, GZIP;q=0.5"}, true},
		{[]string{"br", "gzip"}, true},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.000"}, false},
		{[]string{"*"}, true},
		{[]string{"deflate, br"}, false},
		{[]string{"xgzip"}, false},
	} {
		if got := acceptsGzip(c.h); got != c.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", c.h, got, c.want)
		}
	}
}

// /metrics answers gzip when asked (and plain text otherwise), with the
// same exposition.
func TestMetricsGzip(t *testing.T) {
	reg := prometheus.NewRegistry()
	ctr := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"})
	ctr.Add(3)
	reg.MustRegister(ctr)
	srv := httptest.NewServer(gzipFast(promhttp.HandlerFor(reg, promhttp.HandlerOpts{DisableCompression: true})))
	defer srv.Close()
	get := func(enc string) (string, string) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if enc != "" {
			req.Header.Set("Accept-Encoding", enc)
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r io.Reader = resp.Body
		if resp.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Get("Content-Encoding"), string(b)
	}
	ce, plain := get("")
	if ce != "" || !strings.Contains(plain, "x_total 3") {
		t.Fatalf("plain: encoding %q body %q", ce, plain)
	}
	ce, unzipped := get("gzip")
	if ce != "gzip" || unzipped != plain {
		t.Fatalf("gzip: encoding %q body %q, want the plain body", ce, unzipped)
	}
}
