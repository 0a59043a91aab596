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
	plain := func(bin string, args ...string) (string, error) {
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
	portOf := func(url string) int {
		var port int
		fmt.Sscanf(url, "http://127.0.0.1:%d/", &port)
		return port
	}
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
	for turn := 0; turn < t.turns; turn++ {
		// Alternate within each group (net/http, fasthttp): forwards, then
		// backwards.
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
				return nil, err
			}
			r, err := runWrk(b.p, e.port, t.dur, wrkArgs(t.threads, t.conns, t.dur, e.url)...)
			if err != nil {
				return nil, err
			}
			e.runs = append(e.runs, r)
			b.logf("  turn %d %s: %.0f req/s, p99 %v, connections per process %v", turn+1, e.key, r.ReqPerSec, r.P99, r.Split)
		}
	}
	return t, nil
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
