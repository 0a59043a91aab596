//go:build linux

package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"golang.org/x/sys/unix"
)

// procs is the seam behind which every process start and signal of the
// supervisor sits, so that the supervision logic is tested without forking.
// An implementation reports every started process's end exactly once as an
// exitEvent on the channel it was built with.
type procs interface {
	start(slot, gen int) (pid int, err error)
	// startAll starts a worker per slot, in parallel where it can.
	startAll(slots []int, gen int) []spawnRes
	// startSpare starts a spare (spare_linux.go); promote makes it slot's
	// worker.
	startSpare(gen int) (pid int, err error)
	promote(pid, slot int) error
	signal(pid int, sig unix.Signal) error
	rss(pid int) (uint64, error)
}

// superConfig is what the supervisor needs of Config.
type superConfig struct {
	desired      int
	gen          int
	grace        time.Duration
	heartbeat    time.Duration
	startTimeout time.Duration
	readyDelay   time.Duration
	backoffMin   time.Duration
	backoffMax   time.Duration
	stable       time.Duration
	maxRSS       uint64              // recycle a worker above this RSS (0: off)
	observeStart func(time.Duration) // start-to-ready times (metrics); may be nil
	rssEvery     time.Duration       // how often RSS is checked (default 1s)
	// startAttempts, when positive, is how many early deaths of one
	// slot's workers fail the start while no worker has ever been ready.
	startAttempts int
	spares        int  // warm spares to keep (-spare)
	external      bool // workers are an external command (for hints)
	log           *slog.Logger
	hooks         Hooks
}

// supervisor owns the slots and workers. One goroutine (run) owns all of
// its state; others reach it through ops, exits and notes.
type supervisor struct {
	cfg   superConfig
	procs procs
	owner                // run's goroutine owns every field below
	exits chan exitEvent // from procs
	notes chan noteEvent // from the notify socket
	first chan struct{}  // closed once the first workers are all ready
	log   *slog.Logger
	rng   *rand.Rand
	clk   clock // every time the supervisor reads or waits for

	slots     []*slot
	workers   map[int]*worker
	desired   int
	roll      *rolling
	stopping  bool
	firstOK   bool
	everReady bool  // some worker of this supervisor has been ready
	err       error // why run ended other than by stop: the start failed
	stats     stats
	rssAt     time.Time // next RSS check
	spawnedAt time.Time // when the first workers' processes had all started
	spare     spares    // warm spares (spare_linux.go)
}

// stats are counters read by status and metrics.
type stats struct {
	restarts       map[restartKey]uint64
	notifyRejected uint64
	startFailures  uint64
}

type restartKey struct {
	slot   int
	reason string
}

func newSupervisor(cfg superConfig, p procs, exits chan exitEvent, notes chan noteEvent) *supervisor {
	return &supervisor{
		cfg:     cfg,
		procs:   p,
		exits:   exits,
		notes:   notes,
		owner:   newOwner(),
		first:   make(chan struct{}),
		log:     cfg.log,
		rng:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15)),
		clk:     realClock{},
		workers: make(map[int]*worker),
		desired: cfg.desired,
		stats:   stats{restarts: make(map[restartKey]uint64)},
	}
}

// run supervises until a stop has been asked for and every worker is gone.
// Cancelling ctx is a graceful stop.
func (s *supervisor) run(ctx context.Context) {
	defer close(s.done)
	s.rssAt = s.now()
	s.spawnSlots(0, s.desired)
	s.spawnedAt = s.now()
	timer := s.clk.newTimer(time.Hour)
	defer timer.Stop()
	ctxDone := ctx.Done()
	var due, armedAt time.Time // what the timer waits for, and since when
	for {
		if s.stopping && len(s.workers) == 0 {
			return
		}
		armedAt = s.now()
		if wake, ok := s.nextWake(); ok {
			due = wake
		} else {
			due = armedAt.Add(time.Hour)
		}
		timer.ResetAt(due)
		// The pause check runs at every wake-up, before the event: after a
		// pause the queued heartbeats may be read before the late timer,
		// and the pause must be seen (and the watch restarted) either way.
		var handle func()
		select {
		case ev := <-s.exits:
			handle = func() { s.onExit(ev) }
		case ev := <-s.notes:
			handle = func() { s.onNote(ev) }
		case f := <-s.ops:
			handle = f
		case <-timer.C():
			handle = s.onTimer
		case <-ctxDone:
			ctxDone = nil
			handle = func() { s.stop(true) }
		}
		s.checkPaused(due, armedAt)
		handle()
	}
}

func (s *supervisor) wlog(w *worker) *slog.Logger {
	return s.log.With("slot", w.slot, "pid", w.pid, "generation", w.gen)
}

// spawnSlots adds slots from up to n (exclusive) and starts their
// workers together.
func (s *supervisor) spawnSlots(from, n int) {
	var idx []int
	for i := from; i < n; i++ {
		s.slots = append(s.slots, &slot{index: i})
		idx = append(idx, i)
	}
	for i, r := range s.procs.startAll(idx, s.cfg.gen) {
		sl := s.slots[idx[i]]
		sl.cur = s.started(sl, r.pid, r.err)
	}
}

// spawn starts a worker for sl. On failure (out of fds or processes, say)
// it logs, counts, and puts the slot in backoff; it returns nil then.
func (s *supervisor) spawn(sl *slot) *worker {
	pid, err := s.procs.start(sl.index, s.cfg.gen)
	return s.started(sl, pid, err)
}

// started records the outcome of a start for sl (see spawn).
func (s *supervisor) started(sl *slot, pid int, err error) *worker {
	now := s.now()
	if err != nil {
		s.stats.startFailures++
		sl.failures++
		sl.delay = backoff(sl.failures, s.cfg.backoffMin, s.cfg.backoffMax, s.rng)
		sl.until = now.Add(sl.delay)
		s.log.Error("cannot start worker", "slot", sl.index, "generation", s.cfg.gen, "err", err, "retry_in", sl.delay)
		return nil
	}
	w := &worker{slot: sl.index, pid: pid, gen: s.cfg.gen, state: starting, started: now}
	s.workers[pid] = w
	sl.delay = 0
	s.wlog(w).Debug("worker started")
	if h := s.cfg.hooks.WorkerStarted; h != nil {
		h(sl.index, pid, s.cfg.gen)
	}
	return w
}

func (s *supervisor) slotOf(w *worker) *slot {
	if w.slot >= 0 && w.slot < len(s.slots) {
		if sl := s.slots[w.slot]; sl.cur == w || sl.next == w {
			return sl
		}
	}
	return nil
}

func (s *supervisor) onExit(ev exitEvent) {
	w := s.workers[ev.pid]
	if w == nil {
		return
	}
	delete(s.workers, ev.pid)
	now := s.now()
	status := ev.status.String()
	reason := w.killReason
	if reason == "" {
		reason = ev.status.reason()
	}
	l := s.wlog(w).With("status", status, "reason", reason, "uptime", now.Sub(w.started).Round(time.Millisecond))
	if h := s.cfg.hooks.WorkerExited; h != nil {
		h(w.slot, w.pid, w.gen, status)
	}
	if w.spare {
		s.spareExited(w, status, ev.lastLine, now)
		return
	}
	if s.roll != nil && s.roll.pending == w {
		s.finishRolling(fmt.Errorf("replacement for slot %d (pid %d) %s before it was ready", w.slot, w.pid, status))
	}
	sl := s.slotOf(w)
	if sl == nil || s.stopping {
		l.Info("worker exited")
		return
	}
	if sl.next == w {
		sl.next = nil
		l.Warn("replacement worker exited")
		return
	}
	// w was the slot's current worker.
	sl.cur, sl.next = sl.next, nil
	sl.lastExit = status
	sl.restarts++
	s.stats.restarts[restartKey{sl.index, reason}]++
	if sl.cur != nil {
		l.Warn("worker exited; its replacement is already starting")
		return
	}
	// readyAt, not state: a worker killed for its heartbeat is "stopping".
	early := w.readyAt.IsZero() || now.Sub(w.readyAt) < s.cfg.stable
	if !early {
		sl.failures = 0
		if sl.cur = s.promoteSpare(sl); sl.cur != nil {
			l.Warn("worker exited; a spare takes its slot", "spare", sl.cur.pid)
		} else {
			l.Warn("worker exited; restarting now")
			sl.cur = s.spawn(sl)
		}
		s.keepSpares()
		return
	}
	sl.failures++
	if !s.everReady && s.cfg.startAttempts > 0 && sl.failures >= s.cfg.startAttempts {
		s.failStart(sl, w, status, ev.lastLine)
		return
	}
	sl.delay = backoff(sl.failures, s.cfg.backoffMin, s.cfg.backoffMax, s.rng)
	sl.until = now.Add(sl.delay)
	l.Warn("worker exited early; restarting after backoff", "failures", sl.failures, "retry_in", sl.delay.Round(time.Millisecond))
}

func (s *supervisor) onNote(ev noteEvent) {
	w := s.workers[ev.pid]
	if w == nil {
		// Not a current worker (a worker's child, a stranger, or a worker
		// that exited since): ignored, and counted.
		s.stats.notifyRejected++
		s.log.Debug("notification from unknown pid ignored", "pid", ev.pid)
		return
	}
	now := s.now()
	if ev.watchdog {
		w.lastBeat = now
	}
	if ev.status != "" {
		w.status = ev.status
	}
	if ev.spare && w.spare && !w.warm {
		w.warm = true
		s.wlog(w).Debug("spare waiting")
	}
	if ev.ready && w.state == starting {
		s.markReady(w, now)
	}
	if ev.recycle != "" && w.state == ready {
		s.replace(w.slot, w, ev.recycle)
	}
}

func (s *supervisor) markReady(w *worker, now time.Time) {
	s.everReady = true
	w.state = ready
	w.readyAt = now
	w.lastBeat = now
	if s.cfg.observeStart != nil {
		s.cfg.observeStart(now.Sub(w.started))
	}
	s.wlog(w).Info("worker ready", "start_time", now.Sub(w.started).Round(time.Microsecond))
	if sl := s.slotOf(w); sl != nil && sl.next == w {
		old := sl.cur
		sl.cur, sl.next = w, nil
		if old != nil {
			reason := "rolling"
			if s.roll == nil || s.roll.pending != w {
				reason = sl.replacing
			} else if s.roll.reason != "" {
				reason = s.roll.reason
			}
			sl.replacing = ""
			s.stats.restarts[restartKey{sl.index, reason}]++
			sl.restarts++
			s.retire(old, reason)
		}
	}
	if s.roll != nil && s.roll.pending == w {
		s.roll.pending = nil
		s.rollNext()
	}
	s.checkFirst()
}

func (s *supervisor) checkFirst() {
	if s.firstOK || s.stopping {
		return
	}
	for i := 0; i < s.desired; i++ {
		if i >= len(s.slots) || s.slots[i].cur == nil || s.slots[i].cur.state != ready {
			return
		}
	}
	s.firstOK = true
	close(s.first)
}

// retire stops w gracefully: SIGTERM now, SIGKILL when the grace runs out.
func (s *supervisor) retire(w *worker, reason string) {
	if w.state == stopping {
		return
	}
	w.state = stopping
	w.killReason = reason
	w.killAt = s.now().Add(s.cfg.grace)
	s.wlog(w).Info("stopping worker", "reason", reason)
	if err := s.procs.signal(w.pid, unix.SIGTERM); err != nil {
		s.wlog(w).Warn("cannot signal worker", "err", err)
	}
}

// kill ends w at once with SIGKILL.
func (s *supervisor) kill(w *worker, reason string) {
	if w.killReason == "" || w.state != stopping {
		w.killReason = reason
	}
	w.killed = true
	w.state = stopping
	if err := s.procs.signal(w.pid, unix.SIGKILL); err != nil {
		s.wlog(w).Warn("cannot kill worker", "err", err)
	}
}

// stop begins a graceful (SIGTERM, grace, SIGKILL) or fast (SIGKILL) stop
// of every worker; run returns once they are all gone.
func (s *supervisor) stop(graceful bool) {
	if s.roll != nil {
		s.finishRolling(errStopping)
	}
	s.stopping = true
	for _, w := range s.workers {
		if graceful {
			s.retire(w, "shutdown")
		} else if !w.killed {
			s.kill(w, "shutdown")
		}
	}
}

var (
	errStopping    = errors.New("the master is stopping")
	errRollRunning = errors.New("a rolling restart is already running")
)

// scale sets the number of slots. New slots start a worker at once;
// removed slots' workers are stopped gracefully.
func (s *supervisor) scale(n int) error {
	if n < 1 || n > MaxWorkers {
		return fmt.Errorf("%w: %d workers: want 1 to %d", ErrConfig, n, MaxWorkers)
	}
	if s.stopping {
		return errStopping
	}
	if n == s.desired {
		return nil
	}
	s.log.Info("scaling workers", "from", s.desired, "to", n)
	s.spawnSlots(len(s.slots), n)
	for i := n; i < len(s.slots); i++ {
		for _, w := range []*worker{s.slots[i].cur, s.slots[i].next} {
			if w != nil {
				s.retire(w, "scale")
			}
		}
	}
	if n < len(s.slots) {
		s.slots = s.slots[:n]
	}
	s.desired = n
	s.checkFirst() // the slots that remain may all be ready already
	return nil
}
