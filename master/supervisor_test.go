//go:build linux

package master

import (
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartsSlotsAndFirstReady(t *testing.T) {
	h := newHarness(t, superConfig{desired: 3})
	h.waitFor("3 starts", func() bool { return len(h.f.startsCopy()) == 3 })
	select {
	case <-h.s.first:
		t.Fatal("first closed before any READY=1")
	default:
	}
	pids := h.readyAll()
	select {
	case <-h.s.first:
	case <-time.After(time.Second):
		t.Fatal("first not closed after every worker sent READY=1")
	}
	st := h.status()
	for i, s := range st.Slots {
		if s.State != "ready" || s.PID != pids[i] || s.Slot != i {
			t.Errorf("slot %d: %+v", i, s)
		}
	}
}

func TestNotifyFromUnknownPidIgnored(t *testing.T) {
	h := newHarness(t, superConfig{desired: 1})
	h.waitFor("start", func() bool { return len(h.f.startsCopy()) == 1 })
	h.note(99999, noteEvent{ready: true})
	st := h.status()
	if st.Slots[0].State != "starting" {
		t.Errorf("a stranger's READY=1 made the worker %s", st.Slots[0].State)
	}
	if st.NotifyRejected != 1 {
		t.Errorf("notify_rejected = %d, want 1", st.NotifyRejected)
	}
}

func TestHeartbeatMissKillsWorker(t *testing.T) {
	h := newHarness(t, superConfig{desired: 2, heartbeat: 100 * time.Millisecond})
	h.waitFor("starts", func() bool { return len(h.f.startsCopy()) == 2 })
	pids := h.readyAll()
	// Worker 0 beats, worker 1 is silent.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				h.note(pids[0], noteEvent{watchdog: true})
			}
		}
	}()
	h.waitFor("the silent worker killed", func() bool { return len(h.f.sigsTo(pids[1])) > 0 })
	h.waitFor("its replacement", func() bool { return len(h.f.startsCopy()) == 3 })
	time.Sleep(150 * time.Millisecond)
	close(stop)
	wg.Wait()
	if got := h.f.sigsTo(pids[1]); got[0] != unix.SIGKILL {
		t.Errorf("silent worker got %v, want SIGKILL", got)
	}
	if got := h.f.sigsTo(pids[0]); len(got) != 0 {
		t.Errorf("beating worker was signalled: %v", got)
	}
	ctr := counters{}
	h.s.do(func() { ctr = h.s.takeCounters() })
	if ctr.Restarts[restartKey{1, "heartbeat"}] != 1 {
		t.Errorf("restarts by reason: %v", ctr.Restarts)
	}
}

func TestRollingRestartOneSlotAtATime(t *testing.T) {
	h := newHarness(t, superConfig{desired: 3})
	h.waitFor("starts", func() bool { return len(h.f.startsCopy()) == 3 })
	old := h.readyAll()
	reply := make(chan error, 1)
	h.s.do(func() { h.s.startRolling("rolling", reply) })
	for i := 0; i < 3; i++ {
		h.waitFor("replacement start", func() bool { return len(h.f.startsCopy()) == 4+i })
		repl := h.f.startsCopy()[3+i]
		if repl.slot != i {
			t.Fatalf("replacement %d started in slot %d", i, repl.slot)
		}
		// The old worker keeps serving until its replacement is ready.
		time.Sleep(30 * time.Millisecond)
		if s := h.f.sigsTo(old[i]); len(s) != 0 {
			t.Fatalf("old worker of slot %d signalled before its replacement was ready: %v", i, s)
		}
		if n := len(h.f.startsCopy()); n != 4+i {
			t.Fatalf("%d starts: the next slot began before this one's replacement was ready", n)
		}
		h.note(repl.pid, noteEvent{ready: true})
		h.waitFor("old worker stopped", func() bool { return len(h.f.sigsTo(old[i])) == 1 })
		if s := h.f.sigsTo(old[i]); s[0] != unix.SIGTERM {
			t.Errorf("old worker got %v, want SIGTERM", s)
		}
	}
	select {
	case err := <-reply:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("rolling restart did not finish")
	}
	if len(h.f.startsCopy()) != 6 {
		t.Errorf("%d starts, want 6 (old workers' exits must not restart anything)", len(h.f.startsCopy()))
	}
}

func TestRollingRestartAbortsOnBadReplacement(t *testing.T) {
	h := newHarness(t, superConfig{desired: 2})
	h.waitFor("starts", func() bool { return len(h.f.startsCopy()) == 2 })
	old := h.readyAll()
	reply := make(chan error, 1)
	h.s.do(func() { h.s.startRolling("rolling", reply) })
	h.waitFor("replacement", func() bool { return len(h.f.startsCopy()) == 3 })
	h.f.exit(h.f.startsCopy()[2].pid, 1)
	select {
	case err := <-reply:
		if err == nil {
			t.Fatal("rolling restart reported success with a replacement that died")
		}
		t.Logf("aborted: %v", err)
	case <-time.After(2 * time.Second):
		t.Fatal("no outcome")
	}
	for _, pid := range old {
		if s := h.f.sigsTo(pid); len(s) != 0 {
			t.Errorf("old worker %d signalled: %v", pid, s)
		}
	}
	if st := h.status(); !slicesEqual(readyPIDs(st), old) {
		t.Errorf("serving workers %v, want the old ones %v", readyPIDs(st), old)
	}
}

func TestScaleUpAndDown(t *testing.T) {
	h := newHarness(t, superConfig{desired: 2})
	h.waitFor("starts", func() bool { return len(h.f.startsCopy()) == 2 })
	h.readyAll()
	var err error
	h.s.do(func() { err = h.s.scale(5) })
	if err != nil {
		t.Fatal(err)
	}
	h.waitFor("5 starts", func() bool { return len(h.f.startsCopy()) == 5 })
	pids := h.readyAll()
	h.s.do(func() { err = h.s.scale(1) })
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids[1:] {
		h.waitFor("stop", func() bool { return len(h.f.sigsTo(pid)) == 1 })
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(h.f.startsCopy()); n != 5 {
		t.Errorf("%d starts after scaling down, want 5 (removed slots are not restarted)", n)
	}
	if st := h.status(); st.Desired != 1 || len(st.Slots) != 1 || len(st.Draining) != 0 {
		t.Errorf("status after scale 1: %+v", st)
	}
	h.s.do(func() { err = h.s.scale(0) })
	if !errors.Is(err, ErrConfig) {
		t.Errorf("scale 0: %v, want ErrConfig", err)
	}
	h.s.do(func() { err = h.s.scale(MaxWorkers + 1) })
	if !errors.Is(err, ErrConfig) {
		t.Errorf("scale %d: %v, want ErrConfig", MaxWorkers+1, err)
	}
}

func TestGracefulStopKillsAfterGrace(t *testing.T) {
	h := newHarness(t, superConfig{desired: 2, grace: 100 * time.Millisecond})
	h.f.ignoreTerm = true
	h.waitFor("starts", func() bool { return len(h.f.startsCopy()) == 2 })
	pids := h.readyAll()
	began := time.Now()
	h.cancel()
	select {
	case <-h.s.done:
	case <-time.After(3 * time.Second):
		t.Fatal("supervisor did not finish")
	}
	took := time.Since(began)
	for _, pid := range pids {
		got := h.f.sigsTo(pid)
		if len(got) != 2 || got[0] != unix.SIGTERM || got[1] != unix.SIGKILL {
			t.Errorf("pid %d got %v, want SIGTERM then SIGKILL", pid, got)
		}
	}
	if took < 90*time.Millisecond {
		t.Errorf("SIGKILL after %v, before the grace period", took)
	}
}

func TestStartFailureBacksOffAndRecovers(t *testing.T) {
	f := newFake()
	f.fail = 3 // before the supervisor's first start
	h := newHarnessFake(t, superConfig{desired: 1, backoffMin: 20 * time.Millisecond}, nil, f)
	h.waitFor("a start after 3 failures", func() bool { return len(h.f.startsCopy()) == 1 })
	var st Status
	h.s.do(func() { st = h.s.snapshot() })
	if st.StartFailures != 3 {
		t.Errorf("start failures = %d, want 3", st.StartFailures)
	}
}

func readyPIDs(st Status) []int {
	var out []int
	for _, s := range st.Slots {
		if s.State == "ready" {
			out = append(out, s.PID)
		}
	}
	return out
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMaxRSSRecyclesGracefully(t *testing.T) {
	h := newHarness(t, superConfig{desired: 2, maxRSS: 100 << 20, rssEvery: 20 * time.Millisecond})
	h.waitFor("starts", func() bool { return len(h.f.startsCopy()) == 2 })
	pids := h.readyAll()
	h.f.mu.Lock()
	h.f.rssOf[pids[0]] = 50 << 20
	h.f.rssOf[pids[1]] = 200 << 20
	h.f.mu.Unlock()
	h.waitFor("a replacement", func() bool { return len(h.f.startsCopy()) == 3 })
	repl := h.f.startsCopy()[2]
	if repl.slot != 1 {
		t.Fatalf("replacement started in slot %d, want 1", repl.slot)
	}
	time.Sleep(50 * time.Millisecond)
	if s := h.f.sigsTo(pids[1]); len(s) != 0 {
		t.Fatalf("worker over max-rss signalled before its replacement was ready: %v", s)
	}
	h.note(repl.pid, noteEvent{ready: true})
	h.waitFor("old worker stopped", func() bool { return len(h.f.sigsTo(pids[1])) == 1 })
	if s := h.f.sigsTo(pids[0]); len(s) != 0 {
		t.Errorf("worker under max-rss signalled: %v", s)
	}
	var ctr counters
	h.s.do(func() { ctr = h.s.takeCounters() })
	if ctr.Restarts[restartKey{1, "max-rss"}] != 1 {
		t.Errorf("restarts: %v, want max-rss on slot 1", ctr.Restarts)
	}
}

func TestRecycleRequestFromWorker(t *testing.T) {
	h := newHarness(t, superConfig{desired: 1})
	h.waitFor("start", func() bool { return len(h.f.startsCopy()) == 1 })
	pid := h.readyAll()[0]
	h.note(pid, noteEvent{recycle: "max-requests"})
	h.waitFor("replacement", func() bool { return len(h.f.startsCopy()) == 2 })
	h.note(h.f.startsCopy()[1].pid, noteEvent{ready: true})
	h.waitFor("old stopped", func() bool { return len(h.f.sigsTo(pid)) == 1 })
	var ctr counters
	h.s.do(func() { ctr = h.s.takeCounters() })
	if ctr.Restarts[restartKey{0, "max-requests"}] != 1 {
		t.Errorf("restarts: %v", ctr.Restarts)
	}
}

// Scaling down to the slots that are ready completes the first readiness
// (a slot that never became ready no longer holds it up).
func TestScaleDownCompletesFirstReady(t *testing.T) {
	h := newHarness(t, superConfig{desired: 3})
	h.waitFor("starts", func() bool { return len(h.f.startsCopy()) == 3 })
	st := h.status()
	h.note(st.Slots[0].PID, noteEvent{ready: true})
	h.note(st.Slots[1].PID, noteEvent{ready: true})
	var err error
	h.s.do(func() { err = h.s.scale(2) })
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.s.first:
	case <-time.After(time.Second):
		t.Fatal("first readiness not reached after scaling down to the ready slots")
	}
}
