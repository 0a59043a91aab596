//go:build linux

package master

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeProcs stands in for process starts and signals. A signalled fake
// process exits (SIGKILL at once; SIGTERM too unless ignoreTerm).
type fakeProcs struct {
	mu         sync.Mutex
	next       int
	starts     []fakeStart
	sigs       []fakeSig
	fail       int // the next fail starts return an error
	ignoreTerm bool
	exits      chan exitEvent
	wg         sync.WaitGroup
	dead       map[int]bool
	rssOf      map[int]uint64
	clk        clock
}

type fakeStart struct {
	slot, pid int
	at        time.Time
}

type fakeSig struct {
	pid int
	sig unix.Signal
}

func newFake() *fakeProcs {
	return &fakeProcs{next: 100, exits: make(chan exitEvent), dead: map[int]bool{}, rssOf: map[int]uint64{}, clk: realClock{}}
}

func (f *fakeProcs) start(slot, gen int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		return 0, unix.EMFILE
	}
	f.next++
	f.starts = append(f.starts, fakeStart{slot, f.next, f.clk.now()})
	return f.next, nil
}

func (f *fakeProcs) rss(pid int) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rssOf[pid], nil
}

func (f *fakeProcs) signal(pid int, sig unix.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sigs = append(f.sigs, fakeSig{pid, sig})
	if f.dead[pid] || (sig == unix.SIGTERM && f.ignoreTerm) {
		return nil
	}
	f.dead[pid] = true
	f.exitLocked(pid, exitStatus{code: -1, signal: sig})
	return nil
}

// exit makes pid exit with code (as if it crashed).
func (f *fakeProcs) exit(pid, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dead[pid] = true
	f.exitLocked(pid, exitStatus{code: code})
}

func (f *fakeProcs) exitLocked(pid int, st exitStatus) {
	f.wg.Add(1)
	go func() { defer f.wg.Done(); f.exits <- exitEvent{pid: pid, status: st} }()
}

func (f *fakeProcs) startsCopy() []fakeStart {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeStart(nil), f.starts...)
}

func (f *fakeProcs) sigsTo(pid int) []unix.Signal {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []unix.Signal
	for _, s := range f.sigs {
		if s.pid == pid {
			out = append(out, s.sig)
		}
	}
	return out
}

type harness struct {
	t      testing.TB
	s      *supervisor
	f      *fakeProcs
	cancel context.CancelFunc
}

func newHarness(t testing.TB, cfg superConfig) *harness {
	t.Helper()
	return newHarnessClock(t, cfg, nil)
}

// newHarnessClock is newHarness with a fake clock (nil: the real one).
func newHarnessClock(t testing.TB, cfg superConfig, clk *fakeClock) *harness {
	t.Helper()
	return newHarnessFake(t, cfg, clk, newFake())
}

// newHarnessFake is newHarnessClock with fake processes the test set up
// before the supervisor starts.
func newHarnessFake(t testing.TB, cfg superConfig, clk *fakeClock, f *fakeProcs) *harness {
	t.Helper()
	if clk != nil {
		f.clk = clk
	}
	if cfg.log == nil {
		cfg.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.grace, time.Second)
	def(&cfg.backoffMin, 10*time.Millisecond)
	def(&cfg.backoffMax, 100*time.Millisecond)
	def(&cfg.stable, 50*time.Millisecond)
	cfg.gen = 1
	s := newSupervisor(cfg, f, f.exits, make(chan noteEvent))
	if clk != nil {
		s.clk = clk
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, s: s, f: f, cancel: cancel}
	go s.run(ctx)
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Error("supervisor did not stop")
		}
		f.wg.Wait()
	})
	return h
}

func (h *harness) note(pid int, ev noteEvent) {
	ev.pid = pid
	h.s.notes <- ev
}

func (h *harness) status() Status {
	var st Status
	h.s.do(func() { st = h.s.snapshot() })
	return st
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settle returns once the supervisor has handled everything sent to it so
// far and re-armed its timer: each do runs at the top of a loop turn.
func (h *harness) settle() {
	h.s.do(func() {})
	h.s.do(func() {})
}

// readyAll sends READY=1 for every slot's current worker.
func (h *harness) readyAll() []int {
	st := h.status()
	var pids []int
	for _, s := range st.Slots {
		h.note(s.PID, noteEvent{ready: true})
		pids = append(pids, s.PID)
	}
	return pids
}

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

func TestBackoffBounds(t *testing.T) {
	for n := 1; n < 40; n++ {
		d := backoff(n, 100*time.Millisecond, 10*time.Second, nil)
		want := min(100*time.Millisecond<<min(n-1, 20), 10*time.Second)
		if d != want {
			t.Errorf("backoff(%d) = %v, want %v", n, d, want)
		}
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

// exitSettled makes pid exit and returns once the supervisor has handled
// the exit and re-armed its timer (or has returned).
func (h *harness) exitSettled(pid, code int, lastLine string) {
	h.t.Helper()
	h.f.mu.Lock()
	h.f.dead[pid] = true
	h.f.mu.Unlock()
	select {
	case h.f.exits <- exitEvent{pid: pid, status: exitStatus{code: code}, lastLine: lastLine}:
	case <-h.s.done:
	}
	h.settle()
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
