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

// kill SIGKILLs the worker of slot once it has been up for minUp, and
// waits for its replacement's "worker ready" log line.
func (b *bench) kill(m *Master, slot int, minUp time.Duration) (killEvent, time.Time, error) {
	ev := killEvent{slot: slot}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := m.Status()
		if err == nil && slot < len(st.Slots) && st.Slots[slot].State == "ready" {
			up := time.Duration(st.Slots[slot].Uptime * float64(time.Second))
			if up >= minUp {
				ev.victim = st.Slots[slot].PID
				break
			}
			time.Sleep(minUp - up + time.Millisecond)
			continue
		}
		if time.Now().After(deadline) {
			return ev, time.Time{}, fmt.Errorf("slot %d not ready in 30s (%v):\n%s", slot, err, m.Log.tail())
		}
		time.Sleep(2 * time.Millisecond)
	}
	mark := m.Log.mark()
	at := time.Now()
	if err := unix.Kill(ev.victim, unix.SIGKILL); err != nil {
		return ev, at, fmt.Errorf("SIGKILL %d: %w", ev.victim, err)
	}
	// The kernel tears the victim's memory down before its parent can reap
	// it: time until the pid is gone. (Not "zombie": the thread group
	// leader of a Go process shows Z while its other threads still exit.)
	proc := fmt.Sprintf("/proc/%d", ev.victim)
	for deadline := at.Add(10 * time.Second); time.Now().Before(deadline); {
		if _, err := os.Stat(proc); err != nil {
			break
		}
		time.Sleep(500 * time.Microsecond)
	}
	ev.exit = time.Since(at)
	le, err := m.Log.wait(mark, 30*time.Second, func(e logEvent) bool {
		return e.msg == "worker ready" && e.slot == slot && e.pid != ev.victim
	})
	if err != nil {
		return ev, at, err
	}
	ev.respawn, ev.start = le.at.Sub(at), le.startTime
	return ev, at, nil
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
	p99w, p99s := pctD(inWin, 99), pctD(steady, 99)
	rat := ratio(float64(p99w), float64(p99s))
	r.p("\n| | figure | goal | |\n|---|---|---|---|\n")
	r.p("| failed requests over %d upgrades | %d of %s (keep-alive %d, fresh %d) | 0 | %s |\n", len(l.upgrades), failed, fmtN(int64(total)), failedKA, failed-failedKA,
		r.verdict(goal{what: fmt.Sprintf("§2 failed requests over %d upgrades (generator)", len(l.upgrades)), figure: fmt.Sprintf("%d of %s", failed, fmtN(int64(total))), target: "0", met: failed == 0,
			why: "see the error kinds below the table."}))
	r.p("| p99 latency, upgrade windows (SIGHUP … +1 s) vs steady state | %s vs %s = %.2f× | ≤ 1.5× | %s |\n", fmtD(p99w), fmtD(p99s), rat,
		r.verdict(goal{what: "§2 p99 in upgrade windows ÷ steady state", figure: fmt.Sprintf("%s ÷ %s = %.2f×", fmtD(p99w), fmtD(p99s), rat), target: "≤ 1.5×", met: rat <= 1.5,
			why: "an upgrade starts a whole new master (Go runtime, flag parsing, loading the state: for the demo, generating its 100,000-key table and memfd) and a new generation of workers on the same 2 CPUs that serve the traffic, while the old generation drains; " +
				"the requests that queue behind that CPU burst make the window's tail. What would close it: more CPUs than workers (the start-up burst then runs on an idle core), or starting the new generation at lower CPU priority (nice) during an upgrade, or building the state once and handing the memfd over instead of regenerating it."}))
	r.p("| SIGHUP → new generation serving (all new workers ready), median / max | %s / %s | ≤ 100 ms | %s |\n", fmtD(medianD(all)), fmtD(maxD(all)),
		r.verdict(goal{what: "§2 SIGHUP → new generation serving, median / max", figure: fmt.Sprintf("%s / %s", fmtD(medianD(all)), fmtD(maxD(all))), target: "≤ 100 ms", met: maxD(all) <= 100*time.Millisecond,
			why: upgradeWhy(medianD(started), medianD(all)-medianD(started))}))
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

// upgradeWhy explains a slow upgrade from its two halves.
func upgradeWhy(started, workers time.Duration) string {
	return fmt.Sprintf("the new master logs `master started` %s (median) after the SIGHUP, and its workers are all ready %s after that. ", fmtD(started), fmtD(workers)) +
		"That is the exec of a new Go binary, flag parsing, loading the state (for the demo, regenerating its 100,000-key table and memfd), then fork+exec of every worker, on 2 CPUs that also serve the load. " +
		"What would close it: hand the sealed state memfd over instead of rebuilding it; start the workers while the master finishes its own start-up."
}

func (r *report) crashes(l *liveRun, chart string, idleStart time.Duration) {
	r.p("\n## 3. Worker crash\n\n")
	var resp, start, kills, exits []time.Duration
	for _, k := range l.kills {
		resp, start, kills, exits = append(resp, k.respawn), append(start, k.start), append(kills, k.at), append(exits, k.exit)
	}
	inCrash := func(s sample) bool { return s.start >= l.crashFrom }
	failed := failures(l.samples, inCrash)
	failedKA := failures(l.samples, func(s sample) bool { return inCrash(s) && !s.fresh })
	win := latencies(l.samples, func(s sample) bool { return within(s.start, kills, time.Second) })
	steady := latencies(l.samples, func(s sample) bool {
		return s.start < l.upgradeEnd && s.start >= time.Second && !within(s.start, hupsOf(l), time.Second)
	})
	r.p("Right after the upgrades, under the same generator run, %d SIGKILLs of workers, round robin over the %d slots, every %v; each victim had been up ≥ 300 ms (> `-stable-period 200ms`, so it is replaced at once, without backoff). ",
		len(l.kills), l.workers, l.killEvery)
	r.p("**Respawn-to-serving** is from the SIGKILL to the moment the bench read the master's `worker ready` line for the slot's new pid from its stderr pipe (no polling; the worker sends READY=1 once it accepts). ")
	r.p("**Start → ready** is that line's `start_time` field: from the new process's start to its READY=1, without the master noticing the death and forking.\n\n")
	per := float64(failed) / float64(max(1, len(l.kills)))
	r.p("| | figure | goal | |\n|---|---|---|---|\n")
	r.p("| respawn-to-serving, median / p99 (of %d: the largest) | %s / %s | median ≤ 15 ms | %s |\n", len(resp), fmtD(medianD(resp)), fmtD(pctD(resp, 99)),
		r.verdict(goal{what: "§3 worker SIGKILL → replacement serving, median", figure: fmtD(medianD(resp)), target: "≤ 15 ms", met: medianD(resp) <= 15*time.Millisecond,
			why: respawnWhy(medianD(resp), medianD(start), medianD(exits), idleStart)}))
	r.p("| start → ready of the replacements, median / max | %s / %s | | |\n", fmtD(medianD(start)), fmtD(maxD(start)))
	r.p("| SIGKILL → victim's pid gone (its exit and reaping; polled every 0.5 ms), median / max | %s / %s | | |\n", fmtD(medianD(exits)), fmtD(maxD(exits)))
	r.p("| failed requests per kill | %.1f (%d over %d kills: keep-alive %d, fresh-connection %d) | (reported) | |\n", per, failed, len(l.kills), failedKA, failed-failedKA)
	r.p("| p99 latency, kill windows (SIGKILL … +1 s) vs steady state | %s vs %s | (reported) | |\n", fmtD(pctD(win, 99)), fmtD(pctD(steady, 99)))
	r.p("\nThe failed requests are the ones in flight on, or next sent over, the keep-alive connections the killed process held: they die with it, and a client that never retries sees each as an error (a retrying client, such as Go's `http.Transport` for an idempotent GET, would not). ")
	r.p("Round robin over %d slots makes that nearly all %d keep-alive clients at every kill: the clients that lost their connection reconnect while the replacement is still starting, so the surviving worker accepts them all, and it is the next victim. ", l.workers, l.cfg.KeepAlive)
	r.p("Fresh connections almost never fail (%d here): the listening socket belongs to the master, so connections queued in it survive a worker's death; only those the victim had already accepted are lost.\n", failed-failedKA)
	r.p("\n**Peers:** Unicorn respawns at once but without backoff (a crashing app spawns in a loop; preforkd backs off only for workers that die before `-stable-period`); fasthttp prefork gives up after `RecoverThreshold` = max(1, GOMAXPROCS/2) child deaths in its lifetime, so on this 2-CPU machine the second kill ends the whole server — it could not run this section at all. The README's own figure: 10.6–11.3 ms respawn-to-serving.\n")
	r.p("\n![](%s)\n\n", chart)
	r.p("The chart (`%s`) shows both phases: p99 and p50 latency per 250 ms bucket of request start times (log scale, left), failed requests per bucket (bars, right), a dashed green line at every SIGHUP and an orange one at every SIGKILL.\n", chart)
}

func hupsOf(l *liveRun) []time.Duration {
	var out []time.Duration
	for _, u := range l.upgrades {
		out = append(out, u.at)
	}
	return out
}

// respawnWhy explains a slow respawn from its parts.
func respawnWhy(resp, start, exit, idle time.Duration) string {
	s := fmt.Sprintf("of the %s (medians), the new worker's own start (its process start to READY=1: the Go runtime, the worker runtime, mapping the state, serving) takes %s; "+
		"the victim's exit until the master reaped it %s; the other %s is the master's restart: fork+exec, and the log line. ",
		fmtD(resp), fmtD(start), fmtD(exit), fmtD(max(0, resp-start-exit)))
	if idle > 0 {
		s += fmt.Sprintf("Without load (§5) a worker starts in %s: the load on the same CPUs slows it to %.1f×. ", fmtD(idle), ratio(float64(start), float64(idle)))
	}
	return s + "What would close it: keep a spare worker started and ready (not accepting) per master, so that a death is replaced by a worker that only has to start accepting; or trim the worker's start (what runs before READY=1)."
}
