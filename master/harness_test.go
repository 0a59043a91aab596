//go:build linux

package master

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

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
	promotions [][2]int // pid, slot
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

func (f *fakeProcs) startSpare(gen int) (int, error) { return f.start(-1, gen) }

func (f *fakeProcs) startAll(slots []int, gen int) []spawnRes {
	out := make([]spawnRes, len(slots))
	for i, slot := range slots {
		out[i].pid, out[i].err = f.start(slot, gen)
	}
	return out
}

func (f *fakeProcs) promote(pid, slot int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead[pid] {
		return unix.EPIPE
	}
	f.promotions = append(f.promotions, [2]int{pid, slot})
	return nil
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
