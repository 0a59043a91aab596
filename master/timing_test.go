//go:build linux

// Supervisor timing on a fake clock: backoff, the stable period, the
// failed start, heartbeats and a paused master.
package master

import (
	"strings"
	"testing"
	"time"
)

func TestStableWorkerRestartsAtOnce(t *testing.T) {
	clk := newFakeClock()
	h := newHarnessClock(t, superConfig{desired: 1, backoffMin: time.Second, backoffMax: time.Second}, clk)
	h.waitFor("start", func() bool { return len(h.f.startsCopy()) == 1 })
	pid := h.readyAll()[0]
	h.settle()
	clk.advance(80 * time.Millisecond) // past the stable period (50ms)
	h.exitSettled(pid, 1, "")
	h.waitFor("restart", func() bool { return len(h.f.startsCopy()) == 2 })
	if d := h.f.startsCopy()[1].at.Sub(clk.now()); d != 0 {
		t.Errorf("a worker that served past the stable period was restarted after %v, want at once", d)
	}
	if st := h.status(); st.Slots[0].Restarts != 1 || st.Slots[0].LastExit != "exit status 1" {
		t.Errorf("slot: %+v", st.Slots[0])
	}
}

// Early deaths back off exponentially: driven by a fake clock, each
// restart happens exactly when the slot's delay has passed, not before.
func TestEarlyDeathsBackOffExponentially(t *testing.T) {
	clk := newFakeClock()
	h := newHarnessClock(t, superConfig{desired: 1, backoffMin: 20 * time.Millisecond, backoffMax: 400 * time.Millisecond}, clk)
	want := []time.Duration{20, 40, 80, 160, 320, 400} // ms, ±20% jitter
	var delays []time.Duration
	for i, w := range want {
		h.waitFor("start", func() bool { return len(h.f.startsCopy()) == i+1 })
		h.exitSettled(h.f.startsCopy()[i].pid, 2, "") // dies before READY=1
		d := time.Duration(h.status().Slots[0].Backoff * float64(time.Second))
		delays = append(delays, d)
		if w *= time.Millisecond; d < w*8/10 || d > w*12/10 {
			t.Errorf("death %d: delay %v, want %v ±20%%", i+1, d, w)
		}
		clk.advance(d - time.Millisecond)
		h.settle()
		if n := len(h.f.startsCopy()); n != i+1 {
			t.Fatalf("death %d: restarted %v before its delay of %v", i+1, d-time.Millisecond, d)
		}
		clk.advance(2 * time.Millisecond) // Backoff is float seconds: round up
	}
	h.waitFor("7th start", func() bool { return len(h.f.startsCopy()) == 7 })
	t.Logf("delays: %v", delays)
	if st := h.status(); st.Slots[0].Restarts != 6 {
		t.Errorf("restarts = %d, want 6", st.Slots[0].Restarts)
	}
}

// A start that cannot succeed ends the supervisor with an error naming
// the slot, the count, the last status and the last line; once a worker
// has been ready, early deaths never end it.
func TestFailedStartEndsSupervisor(t *testing.T) {
	clk := newFakeClock()
	h := newHarnessClock(t, superConfig{desired: 2, startAttempts: 3}, clk)
	for i := 0; i < 3; i++ {
		h.waitFor("start", func() bool { return len(h.f.startsCopy()) >= 2+i })
		var pid int
		for _, s := range h.f.startsCopy() {
			if s.slot == 0 {
				pid = s.pid
			}
		}
		h.exitSettled(pid, 3, "db: connection refused")
		clk.advance(time.Second)
	}
	select {
	case <-h.s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the supervisor did not give up")
	}
	for _, want := range []string{"slot 0", "died 3 times", "exit status 3", `"db: connection refused"`} {
		if h.s.err == nil || !strings.Contains(h.s.err.Error(), want) {
			t.Errorf("err %v does not name %s", h.s.err, want)
		}
	}
}

func TestReadyOnceNeverGivesUp(t *testing.T) {
	clk := newFakeClock()
	h := newHarnessClock(t, superConfig{desired: 1, startAttempts: 2}, clk)
	h.waitFor("start", func() bool { return len(h.f.startsCopy()) == 1 })
	h.readyAll()
	for i := 1; i <= 5; i++ {
		h.exitSettled(h.f.startsCopy()[i-1].pid, 1, "") // within the stable period: early
		clk.advance(time.Second)
		h.waitFor("restart", func() bool { return len(h.f.startsCopy()) == i+1 })
	}
	if h.s.err != nil {
		t.Errorf("gave up after a worker had been ready: %v", h.s.err)
	}
}

// A master that did not run for a while (its timer fires late) does not
// take its workers' silence for missed heartbeats; the watch goes on after.
func TestPausedMasterKeepsWorkers(t *testing.T) {
	clk := newFakeClock()
	h := newHarnessClock(t, superConfig{desired: 2, heartbeat: 2 * time.Second}, clk)
	h.waitFor("starts", func() bool { return len(h.f.startsCopy()) == 2 })
	pids := h.readyAll()
	h.settle()
	clk.advance(10 * time.Second) // the master was stopped for 10 s
	h.settle()
	for _, pid := range pids {
		if sigs := h.f.sigsTo(pid); len(sigs) != 0 {
			t.Errorf("worker %d got %v after the master's pause", pid, sigs)
		}
	}
	// The watch still works: worker 1 stays silent for a heartbeat.
	h.note(pids[0], noteEvent{watchdog: true})
	h.settle()
	clk.advance(time.Second)
	h.note(pids[0], noteEvent{watchdog: true})
	h.settle()
	clk.advance(1100 * time.Millisecond)
	h.waitFor("the silent worker killed", func() bool { return len(h.f.sigsTo(pids[1])) > 0 })
	if sigs := h.f.sigsTo(pids[0]); len(sigs) != 0 {
		t.Errorf("the beating worker got %v", sigs)
	}
}

// After a pause, the first thing the master reads may be one worker's
// queued heartbeat rather than its late timer: the pause is still seen, so
// the other worker, whose beat comes next, is not killed meanwhile.
func TestPausedMasterReadsABeatFirst(t *testing.T) {
	clk := newFakeClock()
	h := newHarnessClock(t, superConfig{desired: 2, heartbeat: 2 * time.Second}, clk)
	h.waitFor("starts", func() bool { return len(h.f.startsCopy()) == 2 })
	pids := h.readyAll()
	h.settle()
	clk.jump(10 * time.Second) // stopped for 10 s; the timer has not fired yet
	h.note(pids[0], noteEvent{watchdog: true})
	h.settle()
	clk.advance(time.Second) // less than a heartbeat after the resume
	h.settle()
	for _, pid := range pids {
		if sigs := h.f.sigsTo(pid); len(sigs) != 0 {
			t.Errorf("worker %d got %v after the master's pause", pid, sigs)
		}
	}
}

// A heartbeat kill of a worker that had been ready past the stable period
// is replaced at once, with no backoff.
func TestHeartbeatKillOfStableWorkerRestartsAtOnce(t *testing.T) {
	clk := newFakeClock()
	h := newHarnessClock(t, superConfig{desired: 1, heartbeat: time.Second, backoffMin: time.Minute, backoffMax: time.Minute}, clk)
	h.waitFor("start", func() bool { return len(h.f.startsCopy()) == 1 })
	pid := h.readyAll()[0]
	for range 3 { // beating past the stable period (50ms)
		h.settle()
		clk.advance(500 * time.Millisecond)
		h.note(pid, noteEvent{watchdog: true})
	}
	h.settle()
	clk.advance(1100 * time.Millisecond) // then silent for a heartbeat
	h.waitFor("kill", func() bool { return len(h.f.sigsTo(pid)) > 0 })
	h.waitFor("replacement without backoff", func() bool { return len(h.f.startsCopy()) == 2 })
	if b := h.status().Slots[0].Backoff; b != 0 {
		t.Errorf("backoff %vs after the heartbeat kill of a stable worker", b)
	}
}

func TestBackoffBounds(t *testing.T) {
	for n := 1; n < 40; n++ {
		d := backoff(n, 100*time.Millisecond, 10*time.Second, nil)
		want := min(100*time.Millisecond<<min(n-1, 20), 10*time.Second)
		if d != want {
			t.Errorf("backoff(%d) = %v, want %v", n, d, want)
		}
	}
}
