package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/preforkd/preforkd/master"
)

// Section 1: every server row under three loads, turn after turn.

// The loads of §1.
const (
	loadC32   = "wrk -c32"
	loadC256  = "wrk -c256"
	loadFresh = "fresh"
)

// engine is one server row of the throughput comparison.
type engine struct {
	key, name  string
	workers    int  // serving processes (1 for a plain server)
	diagnostic bool // not part of a goal: explains a ratio
	procs      string
	url        string
	port       int
	pids       []int  // every process of the server: its CPU time is the server's
	master     int    // the process that serves no request (preforkd's or prefork's master), or 0
	side       string // host:port of net/http/pprof and expvar (b, b+), or ""
	cells      map[string][]cellRun
}

// cellRun is one turn of one server under one load.
type cellRun struct {
	rps      float64
	p99      time.Duration
	requests int64
	failed   int64   // socket errors and non-2xx (wrk) or failed requests (generator)
	srvCPU   float64 // CPU-seconds of the server's processes
	mstCPU   float64 // of which its master's
	switches float64 // context switches of the server's threads
	genCPU   float64 // CPU-seconds of the load generator (wrk, or the bench's own)
	busy     float64 // CPU-seconds the whole machine was busy
	wall     float64 // seconds
	conns    []int   // open connections per serving process, largest first (keep-alive)
	perProc  []float64
}

// srvPerReq and genPerReq are CPU time per request, in µs.
func (c cellRun) srvPerReq() float64 { return 1e6 * ratio(c.srvCPU, float64(c.requests)) }
func (c cellRun) genPerReq() float64 { return 1e6 * ratio(c.genCPU, float64(c.requests)) }
func (c cellRun) mstPerReq() float64 { return 1e6 * ratio(c.mstCPU, float64(c.requests)) }

// switchesPerReq is the server's context switches per request.
func (c cellRun) switchesPerReq() float64 { return ratio(c.switches, float64(c.requests)) }

// throughput is section 1's result.
type throughput struct {
	loads        []string
	conns        map[string]int // wrk's connections by load
	freshClients int
	warm, dur    time.Duration
	turns        int
	cpus         int
	engines      []*engine // a2 a4 b b+ c2 c4 d2 d4
	prof         *profileTurn
	profErr      string
}

func (t *throughput) engine(key string) *engine {
	for _, e := range t.engines {
		if e.key == key {
			return e
		}
	}
	return nil
}

// runThroughput starts every server side by side (all idle but the one
// under load) and measures them in turns: per turn and load, the net/http
// group (a2 a4 b b+) then the fasthttp group (c2 c4 d2 d4), each forwards
// on even turns and backwards on odd ones. A last turn of b and b+ is
// profiled and not counted.
func (b *bench) runThroughput() (*throughput, error) {
	defer b.p.killAll()
	t := &throughput{loads: []string{loadC32, loadC256, loadFresh}, conns: map[string]int{loadC32: 32, loadC256: 256},
		freshClients: 16, warm: time.Second, dur: 2 * time.Second, turns: 5, cpus: b.nproc}
	if b.quick {
		t.turns = 1
	}
	if err := b.startEngines(t); err != nil {
		return nil, err
	}
	if err := b.throughputTurns(t); err != nil {
		return nil, err
	}
	prof, err := b.profileTurn(t)
	if err != nil {
		t.profErr = err.Error() // the figures stand without it
		b.logf("  profile: %v", err)
	}
	t.prof = prof
	return t, nil
}

// startEngines starts the eight rows and finds each one's processes.
func (b *bench) startEngines(t *throughput) error {
	one := "1 × GOMAXPROCS=" + strconv.Itoa(b.nproc) + " (default)"
	for _, n := range []int{2, 4} {
		a, err := b.readyMaster(b.bins["v1"], n)
		if err != nil {
			return err
		}
		t.engines = append(t.engines, &engine{key: fmt.Sprintf("a%d", n), workers: n, name: "preforkd, net/http demo workers (`-metrics` on)", procs: workerProcs(a), url: a.URL("/")})
	}
	for _, inst := range []bool{false, true} {
		side, err := freePort()
		if err != nil {
			return err
		}
		args := []string{"-pprof", fmt.Sprintf("127.0.0.1:%d", side)}
		e := &engine{key: "b", workers: 1, name: "one net/http process", procs: one}
		if inst {
			args = append(args, "-instrument")
			e.key, e.diagnostic, e.name = "b+", true, "diagnostic: b plus preforkd's per-request work (HTTP metrics, drain tracking)"
		}
		if e.url, err = b.plain("single", args...); err != nil {
			return err
		}
		e.side = fmt.Sprintf("127.0.0.1:%d", side)
		t.engines = append(t.engines, e)
	}
	for _, n := range []int{2, 4} {
		c, err := b.readyMaster(b.bins["fastworker"], n)
		if err != nil {
			return err
		}
		t.engines = append(t.engines, &engine{key: fmt.Sprintf("c%d", n), workers: n, name: "preforkd, fasthttp workers (`-metrics` on)", procs: workerProcs(c), url: c.URL("/")})
	}
	for _, n := range []int{2, 4} {
		fp, err := b.plain("fastprefork", "-workers", strconv.Itoa(n))
		if err != nil {
			return err
		}
		t.engines = append(t.engines, &engine{key: fmt.Sprintf("d%d", n), workers: n, name: "fasthttp prefork",
			procs: fmt.Sprintf("%d × GOMAXPROCS=1 (prefork sets it in each child)", n), url: fp})
	}
	for _, e := range t.engines {
		e.port = portOf(e.url)
		e.pids = serverPIDs(e.port)
		e.cells = map[string][]cellRun{}
		if len(e.pids) == 0 {
			return fmt.Errorf("%s: no process holds the socket of %s", e.key, e.url)
		}
		if e.workers > 1 {
			e.master = topmost(e.pids)
		}
	}
	return nil
}

// readyMaster starts a master and waits until its workers are all ready.
func (b *bench) readyMaster(bin string, workers int) (*Master, error) {
	m, err := startMaster(b.p, b.tmp, bin, workers)
	if err != nil {
		return nil, err
	}
	if _, err := m.waitStatus(30*time.Second, "workers ready", func(st master.Status) bool { return allReady(st, workers) }); err != nil {
		return nil, err
	}
	return m, nil
}

// throughputTurns runs every load against every row, turn after turn.
// wrk warms each row up once (in the first turn): the servers stay up for
// the whole section.
func (b *bench) throughputTurns(t *throughput) error {
	groups := [][]int{{0, 1, 2, 3}, {4, 5, 6, 7}}
	for turn := 0; turn < t.turns; turn++ {
		for _, load := range t.loads {
			for _, g := range groups {
				if turn%2 == 1 {
					g = reversed(g)
				}
				for _, i := range g {
					e := t.engines[i]
					c, err := b.measure(t, e, load, turn == 0)
					if err != nil {
						return fmt.Errorf("%s, %s: %w", e.key, load, err)
					}
					e.cells[load] = append(e.cells[load], c)
					b.logf("  turn %d %-9s %-3s %7.0f req/s, p99 %v, server %.1f µs/req (master %.1f, %.2f context switches), generator %.1f µs/req, connections %v, requests per process %v",
						turn+1, load, e.key, c.rps, c.p99.Round(time.Microsecond), c.srvPerReq(), c.mstPerReq(), c.switchesPerReq(), c.genPerReq(), c.conns, fmtPer(c.perProc))
				}
			}
		}
	}
	return nil
}

// measure runs one load against one row for t.dur.
func (b *bench) measure(t *throughput, e *engine, load string, warm bool) (cellRun, error) {
	if load == loadFresh {
		return b.measureFresh(t, e)
	}
	conns := t.conns[load]
	if warm {
		if _, err := runWrk(b.p, 0, 0, wrkArgs(1, conns, t.warm, e.url)...); err != nil {
			return cellRun{}, err
		}
	}
	c := cellRun{}
	srv0, mst0, busy0, t0 := cpuSeconds(e.pids), cpuSeconds([]int{e.master}), readCPU().busy, time.Now()
	sw0 := ctxSwitches(e.pids)
	w, err := startWrk(b.p, wrkArgs(1, conns, t.dur, e.url)...)
	if err != nil {
		return c, err
	}
	// Requests per process: data segments received on each connection
	// between an eighth and three quarters of the run (the last sample
	// must come well before wrk closes its connections); connections per
	// process: halfway through.
	began := time.Now()
	at := func(f float64) { time.Sleep(time.Until(began.Add(time.Duration(f * float64(t.dur))))) }
	at(1.0 / 8)
	s0 := sampleSegsIn(e.port, e.pids)
	at(1.0 / 2)
	c.conns = sampleSegsIn(e.port, e.pids).perPID()
	at(3.0 / 4)
	s1 := sampleSegsIn(e.port, e.pids)
	r, err := w.wait(0)
	if err != nil {
		return c, err
	}
	c.srvCPU, c.mstCPU, c.busy, c.wall = cpuSeconds(e.pids)-srv0, cpuSeconds([]int{e.master})-mst0, (readCPU().busy-busy0)/100, time.Since(t0).Seconds()
	c.switches = ctxSwitches(e.pids) - sw0
	c.rps, c.p99, c.requests, c.genCPU = r.ReqPerSec, r.P99, r.Requests, r.CPU.Seconds()
	c.failed = r.SocketErrors() + r.Non2xx
	by := requestsByPID(s0, s1)
	if len(by) == 0 {
		b.logf("  %s %s: no connection in both socket samples (%d, then %d connections): requests per process unknown this turn", e.key, load, len(s0), len(s1))
		return c, nil
	}
	c.perProc = perProcess(by, e.workers)
	return c, nil
}

// measureFresh runs the bench's own generator with fresh connections: it
// reads the answering process's pid from every answer.
func (b *bench) measureFresh(t *throughput, e *engine) (cellRun, error) {
	c := cellRun{}
	srv0, mst0, gen0, busy0, t0 := cpuSeconds(e.pids), cpuSeconds([]int{e.master}), ownCPU(), readCPU().busy, time.Now()
	sw0 := ctxSwitches(e.pids)
	l := startLoad(loadConfig{Addr: strings.TrimSuffix(strings.TrimPrefix(e.url, "http://"), "/"), Path: "/",
		Fresh: t.freshClients, Max: t.dur, MaxRequests: 1 << 30})
	time.Sleep(t.dur)
	s := l.finish()
	c.srvCPU, c.mstCPU, c.genCPU, c.busy, c.wall = cpuSeconds(e.pids)-srv0, cpuSeconds([]int{e.master})-mst0, ownCPU()-gen0, (readCPU().busy-busy0)/100, time.Since(t0).Seconds()
	c.switches = ctxSwitches(e.pids) - sw0
	byPID := map[int]float64{}
	var lat []time.Duration
	for _, x := range s {
		if !x.ok {
			c.failed++
			continue
		}
		c.requests++
		lat = append(lat, x.lat)
		byPID[int(x.pid)]++
	}
	c.rps = float64(c.requests) / t.dur.Seconds()
	c.p99 = pctD(lat, 99)
	c.perProc = perProcess(byPID, e.workers)
	return c, nil
}

// perProcess is the counts by process, largest first, padded with zeros
// to n (a worker that served nothing).
func perProcess(by map[int]float64, n int) []float64 {
	var v []float64
	for _, x := range by {
		v = append(v, x)
	}
	for len(v) < n {
		v = append(v, 0)
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(v)))
	return v
}

// fmtPer prints counts per process: 1,234+1,200.
func fmtPer(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmtN(int64(x)))
	}
	return strings.Join(s, "+")
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
