package main

import (
	"fmt"
	"os"
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
