package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// balance is section 6.
type balance struct {
	workers, clients int
	dur              time.Duration
	perWorker        map[string]float64 // http_requests_total by worker label
	bodies           map[int]int        // answers by the slot in the demo line
	requests, failed int
	listeners        int // listening sockets on the port (/proc/net/tcp)
}

// listenSockets counts the TCP sockets listening on 127.0.0.1:port: 1 for
// one shared socket, one per worker with SO_REUSEPORT.
func listenSockets(port int) int {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0
	}
	want := fmt.Sprintf(":%04X", port)
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[1], want) && f[3] == "0A" {
			n++
		}
	}
	return n
}

// ratio is max/min of the per-worker counts (0 when a worker served none).
func (b *balance) ratio() float64 {
	lo, hi := -1.0, 0.0
	for _, v := range b.perWorker {
		if lo < 0 || v < lo {
			lo = v
		}
		hi = max(hi, v)
	}
	if lo <= 0 || len(b.perWorker) < b.workers {
		return 0
	}
	return hi / lo
}

var reReqTotal = regexp.MustCompile(`^http_requests_total\{(.*)\} ([0-9.e+]+)$`)
var reWorkerLabel = regexp.MustCompile(`worker="([^"]*)"`)

// requestsByWorker sums http_requests_total over code and method, by worker.
func requestsByWorker(metrics string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(metrics, "\n") {
		m := reReqTotal.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		w := reWorkerLabel.FindStringSubmatch(m[1])
		if w == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		out[w[1]] += v
	}
	return out
}

// runBalance sends only fresh-connection requests to 4 workers and reads
// how many each served from the master's /metrics.
func (b *bench) runBalance() (*balance, error) {
	defer b.p.killAll()
	res := &balance{workers: 4, clients: 8, dur: 10 * time.Second}
	if b.quick {
		res.dur = 3 * time.Second
	}
	m, err := startMaster(b.p, b.tmp, b.bins["v1"], res.workers)
	if err != nil {
		return nil, err
	}
	defer m.Stop()
	res.listeners = listenSockets(m.Port)
	l := startLoad(loadConfig{Addr: m.Addr(), Path: "/", Fresh: res.clients, Max: res.dur, MaxRequests: 200_000})
	time.Sleep(res.dur)
	s := l.finish()
	res.requests = len(s)
	res.bodies = map[int]int{}
	for _, x := range s {
		if !x.ok {
			res.failed++
			continue
		}
		res.bodies[int(x.worker)]++
	}
	text, _, err := m.scrape(&http.Client{Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	res.perWorker = requestsByWorker(text)
	b.logf("  %d requests, per worker %v, max/min %.2f", res.requests, res.perWorker, res.ratio())
	return res, nil
}

// scrapeRow is section 7 for one worker count.
type scrapeRow struct {
	workers  int
	took     []time.Duration
	series   int
	families map[string]int  // series by metric family (histogram parts folded)
	methods  map[string]bool // method labels of http_request_duration_seconds
}

var reMethod = regexp.MustCompile(`method="([^"]*)"`)

// countSeries fills row's series counts from one exposition.
func (row *scrapeRow) countSeries(text string) {
	row.families, row.methods = map[string]int{}, map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		row.series++
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suf)
		}
		row.families[name]++
		if name == "http_request_duration_seconds" {
			if mm := reMethod.FindStringSubmatch(line); mm != nil {
				row.methods[mm[1]] = true
			}
		}
	}
}

// runScrape times the master's /metrics with 2, 8 and 32 workers.
func (b *bench) runScrape() ([]scrapeRow, error) {
	defer b.p.killAll()
	counts, n := []int{2, 8, 32}, 50
	if b.quick {
		n = 10
	}
	var rows []scrapeRow
	for _, w := range counts {
		m, err := startMaster(b.p, b.tmp, b.bins["v1"], w)
		if err != nil {
			return nil, err
		}
		// Some traffic first, so that the workers' HTTP series exist.
		l := startLoad(loadConfig{Addr: m.Addr(), Path: "/", Fresh: 4, Max: 10 * time.Second, MaxRequests: 20 * w})
		time.Sleep(200 * time.Millisecond)
		l.finish()
		c := &http.Client{Timeout: 10 * time.Second}
		row := scrapeRow{workers: w}
		for i := 0; i < 5+n; i++ {
			text, took, err := m.scrape(c)
			if err != nil {
				m.Stop()
				return nil, err
			}
			if i >= 5 { // the first five warm up
				row.took = append(row.took, took)
			}
			if i == 0 {
				row.countSeries(text)
			}
		}
		c.CloseIdleConnections()
		m.Stop()
		rows = append(rows, row)
		b.logf("  %d workers: p50 %v, p99 %v (%d series)", w, pctD(row.took, 50), pctD(row.took, 99), row.series)
	}
	return rows, nil
}

// microRow is one Go benchmark: the median of its runs.
type microRow struct {
	pkg, name             string
	nsOp, mbS, bOp, allOp float64
	runs                  int
}

// micro is section 8.
type micro struct {
	args []string
	raw  string
	rows []microRow
}

var reBench = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)

// runMicro runs the packages' Go benchmarks.
func (b *bench) runMicro() (*micro, error) {
	res := &micro{args: []string{"test", "-run", "XXX", "-bench", ".", "-benchmem", "-count", "3"}}
	if b.quick {
		res.args = []string{"test", "-run", "XXX", "-bench", ".", "-benchmem", "-count", "1", "-benchtime", "100ms"}
	}
	res.args = append(res.args, "./state/...", "./internal/sdnotify", "./metrics", "./internal/aggregate")
	cmd := exec.Command("go", res.args...)
	cmd.Dir = b.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := b.p.run(cmd); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(res.args, " "), err, out.String())
	}
	res.raw = out.String()
	type acc struct {
		ns, mb, bo, al []float64
	}
	byName := map[string]*acc{}
	var order []string
	pkg := ""
	for _, line := range strings.Split(res.raw, "\n") {
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/preforkd/preforkd/")
			continue
		}
		m := reBench.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		key := pkg + " " + m[1]
		a := byName[key]
		if a == nil {
			a = &acc{}
			byName[key] = a
			order = append(order, key)
		}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseFloat(f[i], 64)
			switch f[i+1] {
			case "ns/op":
				a.ns = append(a.ns, v)
			case "MB/s":
				a.mb = append(a.mb, v)
			case "B/op":
				a.bo = append(a.bo, v)
			case "allocs/op":
				a.al = append(a.al, v)
			}
		}
	}
	for _, k := range order {
		a := byName[k]
		p, n, _ := strings.Cut(k, " ")
		res.rows = append(res.rows, microRow{pkg: p, name: n, nsOp: medianF(a.ns), mbS: medianF(a.mb),
			bOp: medianF(a.bo), allOp: medianF(a.al), runs: len(a.ns)})
	}
	sort.SliceStable(res.rows, func(i, j int) bool { return res.rows[i].pkg < res.rows[j].pkg })
	return res, nil
}

// hasBenchmarks reports whether the raw output ran any benchmark of pkg.
func (m *micro) hasBenchmarks(pkg string) bool {
	for _, r := range m.rows {
		if r.pkg == pkg {
			return true
		}
	}
	return false
}
