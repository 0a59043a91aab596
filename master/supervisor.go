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
	log          *slog.Logger
	hooks        Hooks
}

// supervisor owns the slots and workers. One goroutine (run) owns all of
// its state; others reach it through ops, exits and notes.
type supervisor struct {
	cfg   superConfig
	procs procs
	exits chan exitEvent // from procs
	notes chan noteEvent // from the notify socket
	ops   chan func()    // run in the owner goroutine
	done  chan struct{}  // closed when run returns
	first chan struct{}  // closed once the first workers are all ready
	log   *slog.Logger
	rng   *rand.Rand
	now   func() time.Time

	slots    []*slot
	workers  map[int]*worker
	desired  int
	roll     *rolling
	stopping bool
	firstOK  bool
	stats    stats
	rssAt    time.Time // next RSS check
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

type rolling struct {
	queue   []int
	pending *worker
	reason  string
	reply   []chan error
}

func newSupervisor(cfg superConfig, p procs, exits chan exitEvent, notes chan noteEvent) *supervisor {
	return &supervisor{
		cfg:     cfg,
		procs:   p,
		exits:   exits,
		notes:   notes,
		ops:     make(chan func()),
		done:    make(chan struct{}),
		first:   make(chan struct{}),
		log:     cfg.log,
		rng:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15)),
		now:     time.Now,
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
	for i := 0; i < s.desired; i++ {
		sl := &slot{index: i}
		s.slots = append(s.slots, sl)
		sl.cur = s.spawn(sl)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ctxDone := ctx.Done()
	for {
		if s.stopping && len(s.workers) == 0 {
			return
		}
		if wake, ok := s.nextWake(); ok {
			timer.Reset(max(time.Until(wake), time.Millisecond))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case ev := <-s.exits:
			s.onExit(ev)
		case ev := <-s.notes:
			s.onNote(ev)
		case f := <-s.ops:
			f()
		case <-timer.C:
			s.onTimer()
		case <-ctxDone:
			ctxDone = nil
			s.stop(true)
		}
	}
}

// do runs f in the owner goroutine and waits for it. It returns false if
// the supervisor has already finished.
func (s *supervisor) do(f func()) bool {
	ran := make(chan struct{})
	select {
	case s.ops <- func() { f(); close(ran) }:
		<-ran
		return true
	case <-s.done:
		return false
	}
}

func (s *supervisor) wlog(w *worker) *slog.Logger {
	return s.log.With("slot", w.slot, "pid", w.pid, "generation", w.gen)
}

// spawn starts a worker for sl. On failure (out of fds or processes, say)
// it logs, counts, and puts the slot in backoff; it returns nil then.
func (s *supervisor) spawn(sl *slot) *worker {
	pid, err := s.procs.start(sl.index, s.cfg.gen)
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
	if w.slot < len(s.slots) {
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
	early := w.state != ready || now.Sub(w.readyAt) < s.cfg.stable
	if !early {
		sl.failures = 0
		l.Warn("worker exited; restarting now")
		sl.cur = s.spawn(sl)
		return
	}
	sl.failures++
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
	if ev.ready && w.state == starting {
		s.markReady(w, now)
	}
	if ev.recycle != "" && w.state == ready {
		s.replace(w.slot, w, ev.recycle)
	}
}

func (s *supervisor) markReady(w *worker, now time.Time) {
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

// nextWake is the earliest time something is due.
func (s *supervisor) nextWake() (time.Time, bool) {
	var t time.Time
	set := func(c time.Time) {
		if t.IsZero() || c.Before(t) {
			t = c
		}
	}
	if !s.stopping {
		for _, sl := range s.slots {
			if sl.cur == nil && !sl.until.IsZero() {
				set(sl.until)
			}
		}
		if s.cfg.maxRSS > 0 {
			set(s.rssAt)
		}
	}
	for _, w := range s.workers {
		switch w.state {
		case stopping:
			if !w.killed {
				set(w.killAt)
			}
		case starting:
			if s.cfg.readyDelay > 0 {
				set(w.started.Add(s.cfg.readyDelay))
			}
			if s.cfg.startTimeout > 0 {
				set(w.started.Add(s.cfg.startTimeout))
			}
		case ready:
			if s.cfg.heartbeat > 0 {
				set(w.lastBeat.Add(s.cfg.heartbeat))
			}
		}
	}
	return t, !t.IsZero()
}

func (s *supervisor) onTimer() {
	now := s.now()
	if !s.stopping && s.cfg.maxRSS > 0 && !now.Before(s.rssAt) {
		every := s.cfg.rssEvery
		if every <= 0 {
			every = time.Second
		}
		s.rssAt = now.Add(every)
		s.checkRSS()
	}
	if !s.stopping {
		for _, sl := range s.slots {
			if sl.cur == nil && !sl.until.IsZero() && !now.Before(sl.until) {
				sl.until = time.Time{}
				sl.cur = s.spawn(sl)
			}
		}
	}
	for _, w := range s.workers {
		switch w.state {
		case stopping:
			if !w.killed && !now.Before(w.killAt) {
				s.wlog(w).Warn("grace period over; killing worker", "grace", s.cfg.grace)
				s.kill(w, w.killReason)
			}
		case starting:
			if s.cfg.readyDelay > 0 && now.Sub(w.started) >= s.cfg.readyDelay {
				s.markReady(w, now)
			} else if s.cfg.startTimeout > 0 && now.Sub(w.started) >= s.cfg.startTimeout {
				s.wlog(w).Error("worker not ready in time; killing it", "start_timeout", s.cfg.startTimeout)
				s.kill(w, "start-timeout")
			}
		case ready:
			if s.cfg.heartbeat > 0 && now.Sub(w.lastBeat) >= s.cfg.heartbeat {
				s.wlog(w).Error("worker missed its heartbeat; killing it", "silent_for", now.Sub(w.lastBeat).Round(time.Millisecond))
				s.kill(w, "heartbeat")
			}
		}
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
	for i := len(s.slots); i < n; i++ {
		sl := &slot{index: i}
		s.slots = append(s.slots, sl)
		sl.cur = s.spawn(sl)
	}
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

// startRolling replaces every slot's worker, one slot at a time: a new
// worker is started beside the old one, and the old one is stopped only
// when the new one is ready. A replacement that dies or is not ready in
// time aborts the restart and leaves the old workers serving. reply gets
// the outcome.
func (s *supervisor) startRolling(reason string, reply chan error) {
	if s.stopping {
		reply <- errStopping
		return
	}
	if s.roll != nil {
		reply <- errRollRunning
		return
	}
	s.roll = &rolling{reason: reason, reply: []chan error{reply}}
	for i := range s.slots {
		s.roll.queue = append(s.roll.queue, i)
	}
	s.log.Info("rolling restart begins", "slots", len(s.roll.queue))
	s.rollNext()
}

func (s *supervisor) rollNext() {
	for len(s.roll.queue) > 0 {
		i := s.roll.queue[0]
		s.roll.queue = s.roll.queue[1:]
		if i >= len(s.slots) {
			continue
		}
		sl := s.slots[i]
		if sl.cur == nil || sl.next != nil {
			continue // in backoff (its next worker is new anyway) or already being replaced
		}
		w := s.spawn(sl)
		if w == nil {
			s.finishRolling(fmt.Errorf("cannot start a replacement for slot %d", i))
			return
		}
		sl.next = w
		s.roll.pending = w
		return
	}
	s.finishRolling(nil)
}

func (s *supervisor) finishRolling(err error) {
	if err != nil {
		s.log.Error("rolling restart aborted; remaining workers keep serving", "err", err)
	} else {
		s.log.Info("rolling restart done")
	}
	for _, r := range s.roll.reply {
		r <- err
	}
	s.roll = nil
}

// replace starts a replacement for w, the current worker of slot i, and
// retires w once the new one is ready (recycling: max-rss, max-requests).
// It does nothing if the slot is already being replaced or w is not its
// ready current worker.
func (s *supervisor) replace(i int, w *worker, reason string) {
	if s.stopping || i >= len(s.slots) {
		return
	}
	sl := s.slots[i]
	if sl.cur != w || sl.next != nil || w.state != ready {
		return
	}
	s.wlog(w).Info("replacing worker", "reason", reason)
	sl.replacing = reason
	sl.next = s.spawn(sl)
}

// checkRSS replaces every ready worker whose resident set is above
// maxRSS.
func (s *supervisor) checkRSS() {
	for _, sl := range s.slots {
		w := sl.cur
		if w == nil || w.state != ready || sl.next != nil {
			continue
		}
		rss, err := s.procs.rss(w.pid)
		if err != nil || rss <= s.cfg.maxRSS {
			continue
		}
		s.wlog(w).Warn("worker over -max-rss", "rss", rss, "max_rss", s.cfg.maxRSS)
		s.replace(sl.index, w, "max-rss")
	}
}
