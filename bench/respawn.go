package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/preforkd/preforkd/master"
)

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
	r.p("**Start → ready** is that line's `start_time` field: from the new process's start to its READY=1, without the master noticing the death and forking. ")
	r.p("Then the same kills on a fresh master with `-spare 1` (README, \"Warm spares\") under a generator run of its own with the same load, each kill after its spare waits: the slot is taken by the spare, and its `start_time` is from the promotion to READY=1 (its app's set-up).\n\n")
	per := float64(failed) / float64(max(1, len(l.kills)))
	r.p("| | figure | goal | |\n|---|---|---|---|\n")
	r.p("| respawn-to-serving without a spare, median / p99 (of %d: the largest) | %s / %s | median ≤ 10 ms | %s |\n", len(resp), fmtD(medianD(resp)), fmtD(pctD(resp, 99)),
		r.verdict(goal{what: "§3 worker SIGKILL → replacement serving, no spare, median", figure: fmtD(medianD(resp)), target: "≤ 10 ms", met: medianD(resp) <= 10*time.Millisecond,
			why: respawnWhy(medianD(resp), medianD(start), medianD(exits), idleStart)}))
	var sresp, sstart, sexits []time.Duration
	for _, k := range l.spareKills {
		sresp, sstart, sexits = append(sresp, k.respawn), append(sstart, k.start), append(sexits, k.exit)
	}
	if len(sresp) > 0 {
		r.p("| respawn-to-serving with `-spare 1`, median / p99 (of %d) | %s / %s | median ≤ 3 ms | %s |\n", len(sresp), fmtD(medianD(sresp)), fmtD(pctD(sresp, 99)),
			r.verdict(goal{what: "§3 worker SIGKILL → replacement serving, -spare 1, median", figure: fmtD(medianD(sresp)), target: "≤ 3 ms", met: medianD(sresp) <= 3*time.Millisecond,
				why: spareWhy(medianD(sresp), medianD(sstart), medianD(sexits))}))
		r.p("| with `-spare 1`: promotion → ready (the app's set-up), median / max | %s / %s | | |\n", fmtD(medianD(sstart)), fmtD(maxD(sstart)))
		r.p("| with `-spare 1`: failed requests | %d of %s over %d kills (keep-alive %d, fresh-connection %d) | (reported) | |\n", l.spareFailed, fmtN(int64(l.spareAll)), len(l.spareKills), l.spareFailedKA, l.spareFailed-l.spareFailedKA)
	}
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
	return s + "What would close it: a spare (`-spare 1`, the next row); or trim the worker's start (what runs before READY=1: mostly a Go process's start on this VM)."
}

// spareWhy explains a promoted spare's respawn from its parts.
func spareWhy(resp, start, exit time.Duration) string {
	return fmt.Sprintf("of the %s (medians), the victim's exit until the master reaped it takes %s (the kernel tears its memory down before SIGCHLD: the master cannot know sooner); the spare's app set-up after the promotion (the demo: opening its table, which validates its 100,000 entries' offsets and order, 6–11 ms of it measured idle, then its mux and HTTP server, READY=1) %s; the master's part, %s. ",
		fmtD(resp), fmtD(exit), fmtD(start), fmtD(max(0, resp-start-exit))) +
		"The promotion itself is one pipe write, and the spare has mapped every page of the state while it waited. With the exit alone near 3 ms, 3 ms cannot be met by any replacement that starts after the death is known. What would close the rest: a spare whose app is already set up (it would need its slot before the app runs: the app reads w.Slot() at set-up), or an app whose set-up is cheap."
}

// spareKills runs the kills of §3 again on a fresh master with -spare 1
// under a generator run of its own (the same load): every victim's slot is
// then taken by the waiting spare.
func (b *bench) spareKills(r *liveRun, kills int) error {
	m, err := startMaster(b.p, b.tmp, b.bins["v1"], r.workers, "-stable-period", "200ms", "-spare", "1")
	if err != nil {
		return err
	}
	defer m.Stop()
	cfg := r.cfg
	cfg.Addr = m.Addr()
	l := startLoad(cfg)
	defer l.finish()
	lead := 2 * time.Second
	sleepUntil(l.t0.Add(lead))
	for i := 0; i < kills; i++ {
		if _, err := m.waitStatus(10*time.Second, "a waiting spare", func(st master.Status) bool {
			return len(st.Spares) == 1 && st.Spares[0].State == "waiting"
		}); err != nil {
			return err
		}
		ev, at, err := b.kill(m, i%r.workers, 300*time.Millisecond)
		if err != nil {
			return err
		}
		ev.at = l.since(at)
		r.spareKills = append(r.spareKills, ev)
		b.logf("  -spare 1: kill %d slot %d: serving again after %v (promotion→ready %v)", i+1, ev.slot, ev.respawn, ev.start)
		sleepUntil(l.t0.Add(lead + time.Duration(i+1)*r.killEvery))
	}
	time.Sleep(time.Second)
	samples := l.finish()
	from := lead
	r.spareFailed = failures(samples, func(s sample) bool { return s.start >= from })
	r.spareFailedKA = failures(samples, func(s sample) bool { return s.start >= from && !s.fresh })
	for _, s := range samples {
		if s.start >= from {
			r.spareAll++
		}
	}
	return nil
}
