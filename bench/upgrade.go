package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/preforkd/preforkd/master"
)

// upgradeEvent is one SIGHUP upgrade. Times are from the SIGHUP.
type upgradeEvent struct {
	at       time.Duration // the SIGHUP, since the load began
	to       string        // the version upgraded to
	started  time.Duration // the new master's "master started" log line read
	first    time.Duration // the first new-generation "worker ready" log line read
	all      time.Duration // the last one: the new generation all serving
	pidFile  time.Duration // the new master's pid in the pid file
	oldGone  time.Duration // the old master drained and exited
	from, gn int           // old and new generation
	// phases are the new master's start phases (its "master ready" line:
	// exec, main, open, state, spawn, workers); reused says whether it
	// took the old master's state region over.
	phases map[string]time.Duration
	reused bool
}

// upgradePhases are the phases of a new master's start, in order, with
// what each covers.
var upgradePhases = []struct{ name, what string }{
	{"exec", "the old master's SIGHUP handling, fork+exec of the new binary, Go runtime and package init"},
	{"main", "the program's main until master.Run (flags)"},
	{"open", "inherited descriptors, the succession link's offer"},
	{"state", "the state region: taken over, or built"},
	{"spawn", "fork+exec of every new worker"},
	{"workers", "until every new worker sent READY=1"},
}

// killEvent is one SIGKILL of a worker.
type killEvent struct {
	at           time.Duration // the SIGKILL, since the load began
	slot, victim int
	respawn      time.Duration // SIGKILL → the replacement's "worker ready" log line read
	exit         time.Duration // SIGKILL → the victim's pid gone: every thread exited, reaped (polled every 0.5 ms)
	start        time.Duration // the replacement's start → READY=1 (the log's start_time)
}

// liveRun is sections 2 and 3: one load generator run across K upgrades,
// then N worker kills; plus wrk across K more upgrades.
type liveRun struct {
	workers               int
	spacing, killEvery    time.Duration
	cfg                   loadConfig
	samples               []sample
	errs                  map[string]int
	upgrades              []upgradeEvent
	kills                 []killEvent
	upgradeEnd, crashFrom time.Duration
	end                   time.Duration
	wrk                   wrkResult
	wrkConns              int
	wrkUpgrades           []upgradeEvent
	// The same kills on a master with -spare 1, under a generator run of
	// its own (same load).
	spareKills            []killEvent
	spareFailed, spareAll int
	spareFailedKA         int
}

// upgrade renames the build of version over the master's executable,
// SIGHUPs the master, and waits until the pid file names the new master,
// the control socket shows the new generation all ready, and the old
// master has exited. The pid file and the log are polled every
// millisecond; "worker ready" lines are stamped as the bench reads them
// from the master's stderr pipe.
func (b *bench) upgrade(m *Master, version string) (upgradeEvent, time.Time, error) {
	var ev upgradeEvent
	old := m.PID()
	st, err := m.Status()
	if err != nil {
		return ev, time.Time{}, err
	}
	ev.from, ev.gn, ev.to = st.Generation, st.Generation+1, version
	next := m.Exe + ".next"
	if err := copyExe(b.bins[version], next); err != nil {
		return ev, time.Time{}, err
	}
	mark := m.Log.mark()
	first := mark
	if err := os.Rename(next, m.Exe); err != nil {
		return ev, time.Time{}, err
	}
	hup := time.Now()
	if err := unix.Kill(old, unix.SIGHUP); err != nil {
		return ev, hup, fmt.Errorf("SIGHUP %d: %w", old, err)
	}
	ready := map[int]time.Time{}
	deadline := hup.Add(60 * time.Second)
	for ev.pidFile == 0 || len(ready) < m.Workers {
		if ev.pidFile == 0 {
			if p := m.PID(); p > 0 && p != old {
				ev.pidFile = time.Since(hup)
			}
		}
		evs := m.Log.since(mark)
		mark += len(evs)
		for _, e := range evs {
			if e.msg == "master started" && e.generation == ev.gn && ev.started == 0 {
				ev.started = e.at.Sub(hup)
			}
			if e.msg == "worker ready" && e.generation == ev.gn {
				if _, seen := ready[e.pid]; !seen {
					ready[e.pid] = e.at
				}
			}
		}
		if time.Now().After(deadline) {
			return ev, hup, fmt.Errorf("upgrade to %s: not done in 60s:\n%s", version, m.Log.tail())
		}
		time.Sleep(time.Millisecond)
	}
	for _, at := range ready {
		d := at.Sub(hup)
		if ev.first == 0 || d < ev.first {
			ev.first = d
		}
		ev.all = max(ev.all, d)
	}
	if le, err := m.Log.wait(first, 10*time.Second, func(e logEvent) bool {
		return e.msg == "master ready" && e.generation == ev.gn
	}); err == nil {
		ev.phases, ev.reused = le.phases, le.reused
	}
	newPID := m.PID()
	if _, err := m.waitStatus(30*time.Second, "the new generation", func(st master.Status) bool {
		return st.PID == newPID && st.Generation == ev.gn && allReady(st, m.Workers)
	}); err != nil {
		return ev, hup, err
	}
	if err := m.waitGone(old, 30*time.Second); err != nil {
		return ev, hup, fmt.Errorf("old master after upgrade: %w", err)
	}
	ev.oldGone = time.Since(hup)
	return ev, hup, nil
}

// sleepUntil sleeps until t.
func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}

// runLive runs sections 2 and 3 under one generator run, then wrk across
// upgrades on a fresh master.
func (b *bench) runLive() (*liveRun, error) {
	defer b.p.killAll()
	r := &liveRun{workers: 2, wrkConns: 100, spacing: 4 * time.Second, killEvery: 500 * time.Millisecond}
	upgrades, kills := 5, 20
	if b.quick {
		upgrades, kills, r.spacing = 2, 6, 3*time.Second
	}
	m, err := startMaster(b.p, b.tmp, b.bins["v1"], r.workers, "-stable-period", "200ms")
	if err != nil {
		return nil, err
	}
	r.cfg = loadConfig{Addr: m.Addr(), Path: "/", KeepAlive: 8, Fresh: 4, Rate: 250,
		Max: 3 * time.Minute, MaxRequests: 250 * 180}
	l := startLoad(r.cfg)
	defer l.finish()
	lead := 2 * time.Second
	sleepUntil(l.t0.Add(lead))
	version := "v1"
	for k := 0; k < upgrades; k++ {
		version = map[string]string{"v1": "v2", "v2": "v1"}[version]
		ev, hup, err := b.upgrade(m, version)
		if err != nil {
			return nil, err
		}
		ev.at = l.since(hup)
		r.upgrades = append(r.upgrades, ev)
		b.logf("  upgrade %d → %s: all new workers ready %v, pid file %v, old master gone %v", k+1, version, ev.all, ev.pidFile, ev.oldGone)
		sleepUntil(l.t0.Add(lead + time.Duration(k+1)*r.spacing))
	}
	r.upgradeEnd = l.since(time.Now())
	r.crashFrom = r.upgradeEnd
	for i := 0; i < kills; i++ {
		ev, at, err := b.kill(m, i%r.workers, 300*time.Millisecond)
		if err != nil {
			return nil, err
		}
		ev.at = l.since(at)
		r.kills = append(r.kills, ev)
		b.logf("  kill %d slot %d: serving again after %v (start→ready %v)", i+1, ev.slot, ev.respawn, ev.start)
		sleepUntil(l.t0.Add(r.crashFrom + time.Duration(i+1)*r.killEvery))
	}
	time.Sleep(time.Second)
	r.end = l.since(time.Now())
	r.samples = l.finish()
	r.errs = l.errors()
	m.Stop()
	if err := b.spareKills(r, kills); err != nil {
		return nil, err
	}

	// wrk across upgrades, on a master of its own.
	m, err = startMaster(b.p, b.tmp, b.bins["v1"], r.workers)
	if err != nil {
		return nil, err
	}
	w, err := startWrk(b.p, wrkArgs(1, r.wrkConns, 5*time.Minute, m.URL("/"))...)
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	version = "v1"
	for k := 0; k < upgrades; k++ {
		version = map[string]string{"v1": "v2", "v2": "v1"}[version]
		ev, _, err := b.upgrade(m, version)
		if err != nil {
			w.wait(time.Second)
			return nil, err
		}
		r.wrkUpgrades = append(r.wrkUpgrades, ev)
		b.logf("  wrk: upgrade %d → %s: all new workers ready %v, old master gone %v", k+1, version, ev.all, ev.oldGone)
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if r.wrk, err = w.wait(5 * time.Second); err != nil {
		return nil, err
	}
	m.Stop()
	return r, nil
}

func (r *report) upgrades(l *liveRun, root string) {
	r.p("\n## 2. Upgrade under load\n\n")
	upEnd := l.upgradeEnd
	inUp := func(s sample) bool { return s.start < upEnd }
	var hups []time.Duration
	for _, u := range l.upgrades {
		hups = append(hups, u.at)
	}
	steady := latencies(l.samples, func(s sample) bool { return inUp(s) && s.start >= time.Second && !within(s.start, hups, time.Second) })
	inWin := latencies(l.samples, func(s sample) bool { return within(s.start, hups, time.Second) })
	total, failed := 0, failures(l.samples, inUp)
	for _, s := range l.samples {
		if inUp(s) {
			total++
		}
	}
	failedKA := failures(l.samples, func(s sample) bool { return inUp(s) && !s.fresh })
	r.p("preforkd demo, %d workers, `-stable-period 200ms`. The bench's own load generator (`bench/load.go`) runs %d keep-alive and %d fresh-connection clients at %.0f req/s each ",
		l.workers, l.cfg.KeepAlive, l.cfg.Fresh, l.cfg.Rate)
	r.p("(paced, so the server is not saturated and latency means something); its clients never retry, so every request without a 200 answer counts as failed. ")
	r.p("Every %v, the other version's build (`v1` ↔ `v2`) is renamed over the running binary's path and the master (pid from `-pidfile`) gets SIGHUP; the bench then waits until the pid file names the new master, the control socket (`GET /status`, what `preforkd ctl status -json` prints) shows the new generation all ready, and the old master has exited. ",
		l.spacing)
	r.p("\"New generation serving\" is when the bench read the last new-generation `worker ready` line from the master's stderr pipe (the new workers accept from the same queue from then on).\n\n")
	var all, first, pid, gone, started []time.Duration
	r.p("| # | to | new master started (log) | first new worker ready | all new workers ready | pid file rewritten | old master exited | failed (SIGHUP −0.25 s … +1 s) | p99 (SIGHUP … +1 s) |\n|---|---|---|---|---|---|---|---|---|\n")
	for i, u := range l.upgrades {
		all, first, pid, gone, started = append(all, u.all), append(first, u.first), append(pid, u.pidFile), append(gone, u.oldGone), append(started, u.started)
		f := failures(l.samples, func(s sample) bool { return s.start >= u.at-bucket && s.start < u.at+time.Second })
		w := latencies(l.samples, func(s sample) bool { return s.start >= u.at && s.start < u.at+time.Second })
		r.p("| %d | %s | %s | %s | %s | %s | %s | %d | %s |\n", i+1, u.to, fmtD(u.started), fmtD(u.first), fmtD(u.all), fmtD(u.pidFile), fmtD(u.oldGone), f, fmtD(pctD(w, 99)))
	}
	r.upgradePhaseTable(l.upgrades)
	p99w, p99s := pctD(inWin, 99), pctD(steady, 99)
	rat := ratio(float64(p99w), float64(p99s))
	r.p("\n| | figure | goal | |\n|---|---|---|---|\n")
	r.p("| failed requests over %d upgrades | %d of %s (keep-alive %d, fresh %d) | 0 | %s |\n", len(l.upgrades), failed, fmtN(int64(total)), failedKA, failed-failedKA,
		r.verdict(goal{what: fmt.Sprintf("§2 failed requests over %d upgrades (generator)", len(l.upgrades)), figure: fmt.Sprintf("%d of %s", failed, fmtN(int64(total))), target: "0", met: failed == 0,
			why: "see the error kinds below the table."}))
	r.p("| p99 latency, upgrade windows (SIGHUP … +1 s) vs steady state | %s vs %s = %.2f× | ≤ 1.5× | %s |\n", fmtD(p99w), fmtD(p99s), rat,
		r.verdict(goal{what: "§2 p99 in upgrade windows ÷ steady state", figure: fmt.Sprintf("%s ÷ %s = %.2f×", fmtD(p99w), fmtD(p99s), rat), target: "≤ 1.5×", met: rat <= 1.5,
			why: "an upgrade starts a whole new master (Go runtime and package init, flags) and a new generation of workers (the same, each) on the same 2 CPUs that serve the traffic, while the old generation drains; " +
				"the requests that queue behind that CPU burst make the window's tail. What would close it: more CPUs than workers (the start-up burst then runs on an idle core), or starting the new generation at lower CPU priority (nice) during an upgrade."}))
	r.p("| SIGHUP → new generation serving (all new workers ready), median / max | %s / %s | median ≤ 30 ms | %s |\n", fmtD(medianD(all)), fmtD(maxD(all)),
		r.verdict(goal{what: "§2 SIGHUP → new generation serving, median / max", figure: fmt.Sprintf("%s / %s", fmtD(medianD(all)), fmtD(maxD(all))), target: "median ≤ 30 ms", met: medianD(all) <= 30*time.Millisecond,
			why: upgradeWhy(l.upgrades)}))
	r.p("| SIGHUP → first new worker ready / pid file rewritten / old master exited (medians) | %s / %s / %s | | |\n", fmtD(medianD(first)), fmtD(medianD(pid)), fmtD(medianD(gone)))
	w := l.wrk
	wrkOK := w.SocketErrors() == 0 && w.Non2xx == 0
	r.p("| `wrk -t1 -c%d` across %d upgrades: socket errors (connect/read/write/timeout), non-2xx | %d (%d/%d/%d/%d), %d — of %s requests, %.0f req/s | 0 | %s |\n",
		l.wrkConns, len(l.wrkUpgrades), w.SocketErrors(), w.Connect, w.Read, w.Write, w.Timeout, w.Non2xx, fmtN(w.Requests), w.ReqPerSec,
		r.verdict(goal{what: fmt.Sprintf("§2 wrk -c%d across %d upgrades: socket errors + non-2xx", l.wrkConns, len(l.wrkUpgrades)), figure: fmt.Sprintf("%d + %d", w.SocketErrors(), w.Non2xx), target: "0", met: wrkOK,
			why: "wrk never retries: an error means a keep-alive connection was closed under it while it sent."}))
	if len(l.errs) > 0 {
		r.p("\nError kinds over the whole run (upgrades and kills): %s.\n", errLine(l.errs))
	}
	var wrkAll []time.Duration
	for _, u := range l.wrkUpgrades {
		wrkAll = append(wrkAll, u.all)
	}
	r.p("\nUnder wrk (saturating), SIGHUP → all new workers ready: median %s, max %s. wrk's own figures: p50 %s, p99 %s.\n", fmtD(medianD(wrkAll)), fmtD(maxD(wrkAll)), fmtD(w.P50), fmtD(w.P99))
	r.p("\n**Peers:** Puma's phased and hot restarts fail requests (puma#2337); HAProxy before 1.8 reset connections at reloads (SO_REUSEPORT); tableflip, which preforkd uses, has no drain of its own. The README's own figure: 0 failed of ~44,000 requests over 10 upgrades, SIGHUP to new generation serving ≈ 100 ms median.\n")
}

func errLine(errs map[string]int) string {
	var keys []string
	for k := range errs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return errs[keys[i]] > errs[keys[j]] })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("`%s` × %d", k, errs[k]))
	}
	return strings.Join(parts, ", ")
}

// upgradeWhy explains a slow upgrade from its phases.
func upgradeWhy(ups []upgradeEvent) string {
	med := phaseMedians(ups)
	var parts []string
	for _, ph := range upgradePhases {
		parts = append(parts, fmt.Sprintf("%s %s", ph.name, fmtD(med[ph.name])))
	}
	return "by phase (medians, the table above): " + strings.Join(parts, ", ") + ". " +
		"The two that remain large are a Go process's start, twice in a row: the new master's (exec: the kernel's exec, the runtime, and the package initialisers of a 16 MB binary; a Go hello-world alone takes ~10 ms to run here) and then its workers' (workers: the same start, the worker runtime, the app's set-up, READY=1), on the 2 CPUs that also serve the load. " +
		"The state no longer counts (taken over). What would close it: start the new generation's workers from the old master (so that they start in parallel with the new master instead of after it), or keep pre-started spares of the new binary."
}

// phaseMedians are the median of each phase over the upgrades that
// reported it.
func phaseMedians(ups []upgradeEvent) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, ph := range upgradePhases {
		var ds []time.Duration
		for _, u := range ups {
			if d, ok := u.phases[ph.name]; ok {
				ds = append(ds, d)
			}
		}
		out[ph.name] = medianD(ds)
	}
	return out
}

// upgradePhaseTable renders the new masters' start phases.
func (r *report) upgradePhaseTable(ups []upgradeEvent) {
	reused := 0
	for _, u := range ups {
		if u.reused {
			reused++
		}
	}
	r.p("\nWhere the time goes: each new master logs the phases of its start in its `master ready` line (README, \"State across upgrades\"); ")
	r.p("the state region was taken over (not rebuilt) in %d of %d upgrades. Per upgrade, then the median:\n\n", reused, len(ups))
	r.p("| phase | what it covers |")
	for i := range ups {
		r.p(" #%d |", i+1)
	}
	r.p(" median |\n|---|---|")
	for range ups {
		r.p("---|")
	}
	r.p("---|\n")
	med := phaseMedians(ups)
	var sum time.Duration
	for _, ph := range upgradePhases {
		r.p("| %s | %s |", ph.name, ph.what)
		for _, u := range ups {
			r.p(" %s |", fmtD(u.phases[ph.name]))
		}
		r.p(" %s |\n", fmtD(med[ph.name]))
		sum += med[ph.name]
	}
	r.p("| | sum of the medians (SIGHUP → the new master ready) | ")
	for range ups {
		r.p(" |")
	}
	r.p(" %s |\n", fmtD(sum))
}
