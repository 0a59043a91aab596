package main

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"runtime"
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

func (r *report) balance(b *balance) {
	r.p("\n## 6. Accept balance\n\n")
	sockets := "one shared listening socket"
	if b.listeners > 1 {
		sockets = fmt.Sprintf("%d listening sockets (SO_REUSEPORT)", b.listeners)
	}
	r.p("%d workers on %s (counted in /proc/net/tcp); the bench's generator runs %d clients that open a new connection for every request (wrk cannot: it keeps connections alive), as fast as answered, for %v. ",
		b.workers, sockets, b.clients, b.dur)
	r.p("Requests per worker are the master's `/metrics` `http_requests_total{worker=…}` summed over code and method (cross-checked with the worker slot in each answer).\n\n")
	var keys []string
	for k := range b.perWorker {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	r.p("| worker | requests (/metrics) | share | answers seen by the generator |\n|---|---|---|---|\n")
	var sum float64
	for _, k := range keys {
		sum += b.perWorker[k]
	}
	for _, k := range keys {
		var slot int
		fmt.Sscan(k, &slot)
		r.p("| %s | %s | %.1f%% | %s |\n", k, fmtN(int64(b.perWorker[k])), 100*b.perWorker[k]/sum, fmtN(int64(b.bodies[slot])))
	}
	rat := b.ratio()
	r.p("\n%s requests, %d failed. **max/min = %.2f** — goal ≤ 1.25: %s\n", fmtN(int64(b.requests)), b.failed, rat,
		r.verdict(goal{what: "§6 accept balance, max/min requests per worker (4 workers, fresh connections)", figure: fmt.Sprintf("%.2f", rat), target: "≤ 1.25", met: rat > 0 && rat <= 1.25,
			why: balanceWhy(b)}))
	r.p("\n**Peers:** on one shared socket, accept skew reaches 3:1 (the Linux SO_REUSEPORT commit message); the Node.js cluster docs report \"over 70%% of connections in two of eight processes\".\n")
}

func balanceWhy(b *balance) string {
	if b.listeners > 1 {
		return "even with a listening socket per worker, the kernel's hash of the clients' ports spreads this many connections unevenly, or some workers are off-CPU when theirs arrive. What would close it: more connections per measurement, or fewer workers than CPUs."
	}
	return fmt.Sprintf("with one shared accept queue, every worker's epoll is woken by each new connection and the first to call accept wins, so the worker that happens to be on a CPU takes the most; "+
		"with %d workers on %d CPUs, and the load generator on the same CPUs, some are always off-CPU. "+
		"What would close it: a listening socket per worker with SO_REUSEPORT (the kernel then spreads connections by hash), with `net.ipv4.tcp_migrate_req=1` so a dying worker's queued connections move to the others instead of being reset — the trade-off behind the default of one shared socket; "+
		"or an accept that wakes one waiter (EPOLLEXCLUSIVE), which Go's netpoller does not use.", b.workers, runtime.NumCPU())
}

var (
	reReqTotal    = regexp.MustCompile(`^http_requests_total\{(.*)\} ([0-9.e+]+)$`)
	reWorkerLabel = regexp.MustCompile(`worker="([^"]*)"`)
)
