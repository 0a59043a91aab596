package main

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/preforkd/preforkd/master"
)

// balance is section 6: the accept balance on and off (-balance=false),
// alternated turn by turn, with fresh connections and with wrk's
// keep-alive connections.
type balance struct {
	workers, clients, kaWorkers, kaConns int
	dur, kaDur                           time.Duration
	listeners                            int // listening sockets on the port (/proc/net/tcp)
	turns                                []balanceTurn
}

// balanceTurn is one run of one mode.
type balanceTurn struct {
	on               bool
	perWorker        map[string]float64 // http_requests_total by worker label
	requests, failed int
	split            []int // wrk's connections per worker, largest first
	kaRPS            float64
}

// freshRatio is max/min of the requests per worker (0 when a worker
// served none).
func (t balanceTurn) freshRatio(workers int) float64 {
	var v []float64
	for _, n := range t.perWorker {
		v = append(v, n)
	}
	return maxMin(v, workers)
}

// kaRatio is max/min of wrk's connections per worker.
func (t balanceTurn) kaRatio(workers int) float64 {
	var v []float64
	for _, n := range t.split {
		v = append(v, float64(n))
	}
	return maxMin(v, workers)
}

// maxMin is max/min of v, padded with zeros to n values; +Inf when a
// value is 0.
func maxMin(v []float64, n int) float64 {
	for len(v) < n {
		v = append(v, 0)
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	if lo <= 0 {
		return math.Inf(1)
	}
	return hi / lo
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

// runBalance alternates the two modes, turn by turn: 8 fresh-connection
// clients against 4 workers (requests per worker from /metrics), then wrk
// -c32 against 2 workers (its connections per worker from /proc/net/tcp).
func (b *bench) runBalance() (*balance, error) {
	defer b.p.killAll()
	res := &balance{workers: 4, clients: 8, dur: 5 * time.Second, kaWorkers: 2, kaConns: 32, kaDur: 4 * time.Second}
	turns := 3
	if b.quick {
		turns, res.dur, res.kaDur = 1, 3*time.Second, 2*time.Second
	}
	for i := 0; i < turns; i++ {
		modes := []bool{true, false}
		if i%2 == 1 {
			modes = []bool{false, true}
		}
		for _, on := range modes {
			t, err := b.balanceTurn(res, on)
			if err != nil {
				return nil, err
			}
			res.turns = append(res.turns, t)
			b.logf("  balance %v: fresh %d requests, per worker %v (max/min %.2f); wrk -c%d: connections %v (max/min %.2f), %.0f req/s",
				on, t.requests, t.perWorker, t.freshRatio(res.workers), res.kaConns, t.split, t.kaRatio(res.kaWorkers), t.kaRPS)
		}
	}
	return res, nil
}

func (b *bench) balanceTurn(res *balance, on bool) (balanceTurn, error) {
	t := balanceTurn{on: on}
	flag := "-balance=" + strconv.FormatBool(on)
	m, err := startMaster(b.p, b.tmp, b.bins["v1"], res.workers, flag)
	if err != nil {
		return t, err
	}
	res.listeners = listenSockets(m.Port)
	if _, err := m.waitStatus(30*time.Second, "workers ready", func(st master.Status) bool { return allReady(st, res.workers) }); err != nil {
		m.Stop()
		return t, err
	}
	l := startLoad(loadConfig{Addr: m.Addr(), Path: "/", Fresh: res.clients, Max: res.dur, MaxRequests: 200_000})
	time.Sleep(res.dur)
	for _, x := range l.finish() {
		t.requests++
		if !x.ok {
			t.failed++
		}
	}
	text, _, err := m.scrape(&http.Client{Timeout: 10 * time.Second})
	m.Stop()
	if err != nil {
		return t, err
	}
	t.perWorker = requestsByWorker(text)

	m, err = startMaster(b.p, b.tmp, b.bins["v1"], res.kaWorkers, flag)
	if err != nil {
		return t, err
	}
	defer m.Stop()
	if _, err := m.waitStatus(30*time.Second, "workers ready", func(st master.Status) bool { return allReady(st, res.kaWorkers) }); err != nil {
		return t, err
	}
	w, err := runWrk(b.p, m.Port, res.kaDur, wrkArgs(1, res.kaConns, res.kaDur, m.URL("/"))...)
	if err != nil {
		return t, err
	}
	t.split, t.kaRPS = w.Split, w.ReqPerSec
	return t, nil
}

func (r *report) balance(b *balance) {
	r.p("\n## 6. Accept balance\n\n")
	sockets := "one shared listening socket"
	if b.listeners > 1 {
		sockets = fmt.Sprintf("%d listening sockets (SO_REUSEPORT)", b.listeners)
	}
	r.p("The accept balance (default; `-balance=false` turns it off) against the kernel's order, alternated turn by turn, each turn on fresh masters. "+
		"**Fresh connections:** %d workers on %s; the bench's generator runs %d clients that open a new connection for every request, as fast as answered, for %v; requests per worker are the master's `/metrics` `http_requests_total{worker=…}`. "+
		"**Keep-alive:** %d workers, `wrk -t1 -c%d -d%v`; wrk's connections per worker are counted in /proc/net/tcp halfway through.\n\n",
		b.workers, sockets, b.clients, b.dur, b.kaWorkers, b.kaConns, b.kaDur)
	r.p("| balance | fresh: requests | fresh: per worker | fresh: max/min | keep-alive: req/s | keep-alive: connections per worker | keep-alive: max/min |\n|---|---|---|---|---|---|---|\n")
	var freshOn, freshOff, kaOn, kaOff, reqOn, reqOff, rpsOn, rpsOff []float64
	for _, t := range b.turns {
		var keys []string
		for k := range t.perWorker {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var per []string
		for _, k := range keys {
			per = append(per, fmtN(int64(t.perWorker[k])))
		}
		fr, kr := t.freshRatio(b.workers), t.kaRatio(b.kaWorkers)
		mode := "off"
		if t.on {
			mode = "**on**"
			freshOn, kaOn, reqOn, rpsOn = append(freshOn, fr), append(kaOn, kr), append(reqOn, float64(t.requests)), append(rpsOn, t.kaRPS)
		} else {
			freshOff, kaOff, reqOff, rpsOff = append(freshOff, fr), append(kaOff, kr), append(reqOff, float64(t.requests)), append(rpsOff, t.kaRPS)
		}
		r.p("| %s | %s (%d failed) | %s | %.2f | %s | %v | %.2f |\n", mode, fmtN(int64(t.requests)), t.failed, strings.Join(per, " / "), fr, fmtN(int64(t.kaRPS)), t.split, kr)
	}
	fOn, kOn := medianF(freshOn), medianF(kaOn)
	r.p("\nMedians, on vs off: fresh max/min %.2f vs %.2f, keep-alive max/min %.2f vs %.2f; throughput on ÷ off: fresh %.2f×, keep-alive %.2f×.\n\n",
		fOn, medianF(freshOff), kOn, medianF(kaOff), medianF(reqOn)/max(1, medianF(reqOff)), medianF(rpsOn)/max(1, medianF(rpsOff)))
	r.p("| | figure | goal | |\n|---|---|---|---|\n")
	r.p("| requests per worker, max/min, fresh connections, %d workers (median of the turns with balance) | %.2f | ≤ 1.10 | %s |\n", b.workers, fOn,
		r.verdict(goal{what: "§6 accept balance, requests per worker max/min (4 workers, fresh connections)", figure: fmt.Sprintf("%.2f", fOn), target: "≤ 1.10", met: fOn <= 1.10,
			why: "the turns above show how far; each worker may run Slack (2) connections ahead of the average of those accepting, and one that waited MaxWait (5 ms) accepts anyway"}))
	r.p("| wrk's keep-alive connections per worker, max/min, -c%d, %d workers (median) | %.2f | ≤ 1.25 | %s |\n", b.kaConns, b.kaWorkers, kOn,
		r.verdict(goal{what: "§6 keep-alive connections per worker max/min (-c32, 2 workers)", figure: fmt.Sprintf("%.2f", kOn), target: "≤ 1.25", met: kOn <= 1.25,
			why: "a worker more than one connection over the average waited up to MaxWait (5 ms) and then accepted anyway: the other worker was not accepting within it"}))
	r.p("\nHow it works: every Go worker counts, on a small board of counters in shared memory (a memfd the master creates for its generation), its open and accepted connections; before each accept it compares itself with the other workers, and while it holds more than one open connection above the average, or has accepted more than 2 connections above the average of the workers accepting now, it leaves the one shared queue to the others for at most 5 ms. The queue stays the master's: a worker's crash loses only what it had accepted.\n")
	r.p("\n**Peers:** on one shared socket, accept skew reaches 3:1 (the Linux SO_REUSEPORT commit message); the Node.js cluster docs report \"over 70%% of connections in two of eight processes\"; gunicorn, Puma and Node's cluster have no balance for keep-alive connections.\n")
}

var (
	reReqTotal    = regexp.MustCompile(`^http_requests_total\{(.*)\} ([0-9.e+]+)$`)
	reWorkerLabel = regexp.MustCompile(`worker="([^"]*)"`)
)
