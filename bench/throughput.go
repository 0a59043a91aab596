package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// engine is one server of the throughput comparison.
type engine struct {
	key, name  string
	diagnostic bool   // not part of a goal: explains a ratio
	procs      string // processes serving and their GOMAXPROCS, as measured
	url        string
	port       int
	runs       []wrkResult // one per turn
}

// throughput is section 1's result.
type throughput struct {
	threads, conns int
	warm, dur      time.Duration
	turns          int
	cpus           int
	engines        []*engine // a, b, b+, c, c1, d
}

func (t *throughput) engine(key string) *engine {
	for _, e := range t.engines {
		if e.key == key {
			return e
		}
	}
	return nil
}

// reqs is the median req/s of the turns.
func (e *engine) reqs() float64 {
	v := make([]float64, len(e.runs))
	for i, r := range e.runs {
		v[i] = r.ReqPerSec
	}
	return medianF(v)
}

// p99 is the median p99 of the turns.
func (e *engine) p99() time.Duration {
	v := make([]time.Duration, len(e.runs))
	for i, r := range e.runs {
		v[i] = r.P99
	}
	return medianD(v)
}

// runThroughput starts the servers side by side (all idle but the one
// under wrk) and measures them in turns, alternated: turn 0 runs
// a b b+ c (c1) d, turn 1 b+ b a d (c1) c, and so on.
func (b *bench) runThroughput() (*throughput, error) {
	defer b.p.killAll()
	t := &throughput{threads: 1, conns: 32, warm: time.Second, dur: 5 * time.Second, turns: 3, cpus: b.nproc}
	if b.quick {
		t.dur, t.turns = 2*time.Second, 1
	}
	const workers = 2
	a, err := startMaster(b.p, b.tmp, b.bins["v1"], workers)
	if err != nil {
		return nil, err
	}
	c, err := startMaster(b.p, b.tmp, b.bins["fastworker"], workers)
	if err != nil {
		return nil, err
	}
	// c1 (GOMAXPROCS=1 forced, as prefork does) only when c's workers run
	// with something else.
	cProcs := workerProcs(c)
	var c1 *Master
	if cProcs != "2 × GOMAXPROCS=1" {
		if c1, err = startMasterEnv(b.p, b.tmp, b.bins["fastworker"], []string{"GOMAXPROCS=1"}, workers); err != nil {
			return nil, err
		}
	}
	plain := b.plain
	single, err := plain("single")
	if err != nil {
		return nil, err
	}
	singleInst, err := plain("single", "-instrument")
	if err != nil {
		return nil, err
	}
	fp, err := plain("fastprefork", "-workers", strconv.Itoa(workers))
	if err != nil {
		return nil, err
	}
	one := "1 × GOMAXPROCS=" + strconv.Itoa(b.nproc) + " (default)"
	t.engines = []*engine{
		{key: "a", name: "preforkd, net/http demo workers (`-metrics` on)", procs: workerProcs(a), url: a.URL("/")},
		{key: "b", name: "one net/http process", procs: one, url: single},
		{key: "b+", name: "diagnostic: b plus preforkd's per-request work (HTTP metrics, drain tracking)", procs: one, diagnostic: true, url: singleInst},
		{key: "c", name: "preforkd, fasthttp workers (`-metrics` on)", procs: cProcs, url: c.URL("/")},
		{key: "d", name: "fasthttp prefork", procs: fmt.Sprintf("%d × GOMAXPROCS=1 (prefork sets it in each child)", workers), url: fp},
	}
	if c1 != nil {
		t.engines = append(t.engines[:4], &engine{key: "c1", name: "diagnostic: c with GOMAXPROCS=1 in the environment, as prefork does",
			procs: workerProcs(c1), diagnostic: true, url: c1.URL("/")}, t.engines[4])
	}
	for _, e := range t.engines {
		e.port = portOf(e.url)
	}
	return t, b.throughputTurns(t)
}

// throughputTurns runs wrk against every engine, turn after turn,
// alternating within each group (net/http, fasthttp): forwards, then
// backwards.
func (b *bench) throughputTurns(t *throughput) error {
	for turn := 0; turn < t.turns; turn++ {
		var order []int
		for _, g := range [][]int{{0, 1, 2}, seq(3, len(t.engines))} {
			if turn%2 == 1 {
				g = reversed(g)
			}
			order = append(order, g...)
		}
		for _, i := range order {
			e := t.engines[i]
			if _, err := runWrk(b.p, 0, 0, wrkArgs(t.threads, t.conns, t.warm, e.url)...); err != nil {
				return err
			}
			r, err := runWrk(b.p, e.port, t.dur, wrkArgs(t.threads, t.conns, t.dur, e.url)...)
			if err != nil {
				return err
			}
			e.runs = append(e.runs, r)
			b.logf("  turn %d %s: %.0f req/s, p99 %v, connections per process %v", turn+1, e.key, r.ReqPerSec, r.P99, r.Split)
		}
	}
	return nil
}

// plain starts a comparison server (not a preforkd) on a free port and
// returns its URL.
func (b *bench) plain(bin string, args ...string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := startPlain(b.p, b.tmp, b.bins[bin], port, append([]string{"-addr", addr}, args...)...); err != nil {
		return "", err
	}
	return "http://" + addr + "/", nil
}

// portOf is the port of a http://127.0.0.1:PORT/ URL.
func portOf(url string) int {
	var port int
	fmt.Sscanf(url, "http://127.0.0.1:%d/", &port)
	return port
}

// seq is from, from+1, …, to-1.
func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func reversed(v []int) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[len(v)-1-i] = x
	}
	return out
}

// workerProcs describes a master's workers: how many, and the GOMAXPROCS
// each runs with (from the first worker's environment; Go's default, one
// per CPU, when unset).
func workerProcs(m *Master) string {
	st, err := m.Status()
	if err != nil || len(st.Slots) == 0 {
		return "?"
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", st.Slots[0].PID))
	if err != nil {
		return "?"
	}
	v := fmt.Sprintf("GOMAXPROCS=%d (default)", runtime.NumCPU())
	for _, kv := range strings.Split(string(env), "\x00") {
		if strings.HasPrefix(kv, "GOMAXPROCS=") {
			v = kv
		}
	}
	return fmt.Sprintf("%d × %s", len(st.Slots), v)
}

// bySplit divides a multi-process engine's turns: those where one process
// held (nearly) every wrk connection, and the others.
func (e *engine) bySplit() (one, split []float64) {
	if !strings.Contains(e.procs, "2 ×") {
		return nil, nil
	}
	for _, x := range e.runs {
		if concentrated(x.Split) {
			one = append(one, x.ReqPerSec)
		} else if len(x.Split) > 1 {
			split = append(split, x.ReqPerSec)
		}
	}
	return one, split
}

// concentrated reports whether one process held ≥ 90% of the connections.
func concentrated(split []int) bool {
	total := 0
	for _, n := range split {
		total += n
	}
	return total > 0 && split[0]*10 >= total*9
}

// spread is (max − min) / median of an engine's turns.
func (e *engine) spread() float64 {
	lo, hi := e.runs[0].ReqPerSec, e.runs[0].ReqPerSec
	for _, x := range e.runs {
		lo, hi = min(lo, x.ReqPerSec), max(hi, x.ReqPerSec)
	}
	return ratio(hi-lo, e.reqs())
}

func (r *report) throughput(t *throughput) {
	r.throughputSplits(t, r.throughputTable(t))
	r.throughputGoals(t)
}

// throughputTable is §1's table of servers and turns; it reports whether
// some turn of a 2-worker server had its connections on one worker.
func (r *report) throughputTable(t *throughput) (lopsided bool) {
	r.p("\n## 1. Throughput and p99 latency\n\n")
	r.p("Load: `wrk -t%d -c%d --latency`, %v warm-up then %v, %d turns per server, alternated within each group (a b b+, c … d, then backwards); the figures are the medians of the turns. ",
		t.threads, t.conns, t.warm, t.dur, t.turns)
	r.p("One wrk thread is as much load generator as this machine can spare: it keeps one of the %d CPUs busy on its own, so the servers share what is left, and the comparison is of CPU cost per request (32 connections keep every server process busy without queueing much in wrk). ", t.cpus)
	r.p("All the servers run side by side for the whole section (the idle ones cost nothing measurable) and answer the same line (`preforkd demo worker=… pid=… generation=1 version=v1`). ")
	r.p("Rows marked diagnostic are not goals: they explain the ratios. The processes column is measured (a worker's environment), not assumed.\n\n")
	r.p("| | server | processes × GOMAXPROCS | req/s | p99 | req/s per turn (wrk's connections per process) | spread |\n|---|---|---|---|---|---|---|\n")
	for _, e := range t.engines {
		var turns []string
		for _, x := range e.runs {
			var split []string
			for _, n := range x.Split {
				split = append(split, strconv.Itoa(n))
			}
			turns = append(turns, fmt.Sprintf("%s (%s)", fmtN(int64(x.ReqPerSec)), strings.Join(split, "+")))
			if strings.Contains(e.procs, "2 ×") && concentrated(x.Split) {
				lopsided = true
			}
		}
		r.p("| %s | %s | %s | %s | %s | %s | %.0f%% |\n", e.key, e.name, e.procs, fmtN(int64(e.reqs())), fmtD(e.p99()), strings.Join(turns, ", "), 100*e.spread())
	}
	return lopsided
}

// throughputSplits explains the spread and how wrk's connections landed.
func (r *report) throughputSplits(t *throughput, lopsided bool) {
	r.p("\nSpread is (max − min) ÷ median of the turns: how much this machine moved during the section. ")
	r.p("The connections per process are sampled from /proc/net/tcp halfway through each turn: with one shared accept queue, wrk's %d connections, opened at once, land wherever the accepting processes happen to be.", t.conns)
	if lopsided {
		r.p(" In some turns one worker took all or nearly all (≥ 90%%) of them: the first worker to wake drains the burst of connects in its accept loop.")
		var faster, slower []string
		for _, e := range t.engines {
			one, split := e.bySplit()
			if len(one) == 0 || len(split) == 0 {
				continue
			}
			s := fmt.Sprintf("%s: %s req/s with one worker holding ≥ 90%% of the connections, %s split", e.key, fmtN(int64(medianF(one))), fmtN(int64(medianF(split))))
			if medianF(one) > medianF(split) {
				faster = append(faster, s)
			} else {
				slower = append(slower, s)
			}
		}
		if len(faster) > 0 {
			r.p(" Faster with one worker — %s: the server outruns wrk, and one busy worker never switches to another process.", strings.Join(faster, "; "))
		}
		if len(slower) > 0 {
			r.p(" Slower with one worker — %s: the server is the bottleneck, and one worker with one P uses one CPU at most while the other idles.", strings.Join(slower, "; "))
		}
	}
	r.p("\n\n")
}

// throughputGoals is §1's ratios and the verdicts on them.
func (r *report) throughputGoals(t *throughput) {
	a, b, bi, c, c1, d := t.engine("a"), t.engine("b"), t.engine("b+"), t.engine("c"), t.engine("c1"), t.engine("d")
	rr := func(x, y *engine) float64 { return ratio(x.reqs(), y.reqs()) }
	rp := func(x, y *engine) float64 { return ratio(float64(x.p99()), float64(y.p99())) }
	ab, cd := rr(a, b), rr(c, d)
	r.p("| ratio | req/s | p99 |\n|---|---|---|\n")
	r.p("| **a/b** preforkd net/http ÷ one net/http process | **%.2f×** | %.2f× |\n", ab, rp(a, b))
	r.p("| **c/d** preforkd fasthttp ÷ fasthttp prefork | **%.2f×** | %.2f× |\n", cd, rp(c, d))
	r.p("| b+/b what preforkd's per-request work costs one process | %.2f× | %.2f× |\n", rr(bi, b), rp(bi, b))
	r.p("| a/b+ the process model alone (same per-request work) | %.2f× | %.2f× |\n", rr(a, bi), rp(a, bi))
	if c1 != nil {
		r.p("| c1/d preforkd fasthttp with prefork's GOMAXPROCS=1 ÷ prefork | %.2f× | %.2f× |\n", rr(c1, d), rp(c1, d))
	}
	r.p("\n**Peer:** fasthttp's prefork mode (row d) is the peer: its own figure is +7.5%% req/s over one fasthttp process, p99 15 ms vs 75 ms (its own benchmark).\n\n")
	r.p("**Goal:** throughput ≥ 1.0× each engine's own best mode (a/b and c/d).\n\n")
	noise := func(x, y *engine) string {
		if 1-rr(x, y) < max(x.spread(), y.spread())/2 {
			return fmt.Sprintf(" The shortfall (%.0f%%) is smaller than half the turn-to-turn spread of these two rows (%.0f%% and %.0f%%): on this machine it is within the noise, and more turns on a quiet machine would tell.",
				100*(1-rr(x, y)), 100*x.spread(), 100*y.spread())
		}
		return ""
	}
	cost := func(x float64) string {
		if x >= 1 {
			return "nothing"
		}
		return fmt.Sprintf("%.0f%%", 100*(1-x))
	}
	whyAB := fmt.Sprintf("split in two: preforkd's per-request work (the HTTP metrics every worker gets, `metrics.NewHTTPMetrics`, and the drain's connection tracking, `server.HTTP`) costs one process %s (b+/b = %.2f×), "+
		"and the process model %s (a/b+ = %.2f×: %s against %s, the same per-request work). ", cost(rr(bi, b)), rr(bi, b), cost(rr(a, bi)), rr(a, bi), a.procs, b.procs)
	oneA, splitA := a.bySplit()
	switch {
	case len(oneA) > 0 && strings.Contains(a.procs, "GOMAXPROCS=1"):
		whyAB += fmt.Sprintf("In %d of %d turns one worker held ≥ 90%% of wrk's %d connections (the first worker to wake drains the burst of connects), so preforkd served with one process and GOMAXPROCS=1 (the CPUs/workers share the master gives each worker) against b's %s: one P against two. ",
			len(oneA), len(a.runs), t.conns, b.procs)
		if len(splitA) > 0 {
			whyAB += fmt.Sprintf("In its turns with the connections split, a made %s req/s (%.2f× of b). ", fmtN(int64(medianF(splitA))), ratio(medianF(splitA), b.reqs()))
		}
		whyAB += "What would close it: spread keep-alive connections over the workers (a listening socket per worker with SO_REUSEPORT, or a worker that pauses accepting while it holds more than its share), " +
			"or let a worker's GOMAXPROCS exceed its CPU share so that one loaded worker can use an idle CPU; and with more cores than this machine's 2 (and wrk on another host) the multi-process model has room to win."
	case rr(a, bi) < rr(bi, b):
		whyAB += fmt.Sprintf("The process model's share is what a %d-CPU machine with the load generator on it does to any prefork server: wrk holds one CPU, so the workers share about one, "+
			"and two processes taking turns on it switch address spaces where one process switches goroutines; there is no idle core for the second worker to win back. "+
			"What would close it: nothing preforkd can do on a machine this small; the model pays off with more cores than workers need to share (measure on ≥ 4 cores with wrk on another host), "+
			"where one process's heap, GC and scheduler contend and the workers don't.", t.cpus)
	default:
		whyAB += "What would close it: make that per-request work cheaper (b+/b is its price; connection tracking is already atomics set only while draining, and the HTTP metrics allocate nothing): " +
			"what remains is the metrics' counter and histogram updates and the middleware's wrapped writer, a few atomic operations per request that one process without them does not pay."
	}
	whyAB += noise(a, b)
	r.p("- a/b = %.2f×: %s\n", ab, r.verdict(goal{what: "§1 req/s, preforkd net/http ÷ one net/http process", figure: fmt.Sprintf("%.2f×", ab), target: "≥ 1.0×", met: ab >= 1.0, why: whyAB}))
	var whyCD string
	if c1 != nil {
		whyCD = fmt.Sprintf("fasthttp prefork sets GOMAXPROCS=1 in each child; preforkd's workers ran with %s, so their Ps contend with each other and with wrk for %d CPUs. "+
			"With GOMAXPROCS=1 in its workers (c1) preforkd is at %.2f× of prefork. What would close it: run workers with GOMAXPROCS = CPUs/workers.", c.procs, t.cpus, rr(c1, d))
	} else {
		whyCD = fmt.Sprintf("both serve the same fasthttp handler from one shared socket with the same processes (%s against %s). "+
			"What preforkd adds in each worker is its runtime: the metrics socket and registry, the lifeline pipe, the notify socket. "+
			"What would close it: profile a worker under this load and trim that runtime's per-request share (it should have none).", c.procs, d.procs)
	}
	whyCD += noise(c, d)
	r.p("- c/d = %.2f×: %s\n", cd, r.verdict(goal{what: "§1 req/s, preforkd fasthttp ÷ fasthttp prefork", figure: fmt.Sprintf("%.2f×", cd), target: "≥ 1.0×", met: cd >= 1.0, why: whyCD}))
}
