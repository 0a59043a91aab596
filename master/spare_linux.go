//go:build linux

package master

import (
	"time"
)

// Warm spares (-spare N). A spare is a Go worker started ahead of need: it
// runs the Go runtime, the program's main and the worker runtime's set-up
// (descriptors, the mapped state, the balance board), says
// X_PREFORKD_SPARE=waiting, and blocks before the app runs. When a slot's
// worker dies after its stable period, the supervisor promotes a spare into
// the slot instead of starting a process: one line on the spare's pipe
// (PREFORK_SPARE_FD) names the slot, the spare's app starts and sends
// READY=1 like any worker's. A new spare is then started in the background.
//
// Early deaths (a worker that died before -stable-period) still go through
// the slot's backoff, not a spare: a crashing app would otherwise use up
// spares as fast as they start. Spares that die unasked back off on their
// own (spares.failures), so a program that cannot start makes no loop
// either. Spares start only once the master is ready (enableSpares).

// spares is the supervisor's spare bookkeeping (its goroutine owns it).
type spares struct {
	on       bool      // spares may start (the master is ready: never during a canary or a surge)
	failures int       // spares that died unasked since the last promotion
	until    time.Time // no new spare before then (backoff)
	promoted uint64    // spares promoted into a slot
}

// enableSpares lets spares start, once the master is ready: a new master
// at an upgrade must not add processes during its canary or surge.
func (s *supervisor) enableSpares() {
	s.spare.on = true
	s.keepSpares()
}

// spareList returns the live spares, oldest first.
func (s *supervisor) spareList() []*worker {
	var out []*worker
	for _, w := range s.workers {
		if w.spare && w.state != stopping {
			out = append(out, w)
		}
	}
	for i := 1; i < len(out); i++ { // a handful: insertion sort by start
		for j := i; j > 0 && out[j].started.Before(out[j-1].started); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// keepSpares starts spares up to the configured count once the first
// workers are all ready (spares never compete with them for the CPUs), and
// not while stopping or backing off.
func (s *supervisor) keepSpares() {
	if s.cfg.spares <= 0 || s.stopping || !s.spare.on || s.now().Before(s.spare.until) {
		return
	}
	for n := len(s.spareList()); n < s.cfg.spares; n++ {
		pid, err := s.procs.startSpare(s.cfg.gen)
		if err != nil {
			s.stats.startFailures++
			s.spareBackoff()
			s.log.Error("cannot start a spare", "generation", s.cfg.gen, "err", err, "retry_in", s.spare.until.Sub(s.now()).Round(time.Millisecond))
			return
		}
		w := &worker{slot: -1, pid: pid, gen: s.cfg.gen, state: starting, started: s.now(), spare: true}
		s.workers[pid] = w
		s.wlog(w).Debug("spare started")
	}
}

func (s *supervisor) spareBackoff() {
	s.spare.failures++
	s.spare.until = s.now().Add(backoff(s.spare.failures, s.cfg.backoffMin, s.cfg.backoffMax, s.rng))
}

// spareDue is when keepSpares must run next (a spare backoff ending).
func (s *supervisor) spareDue() (time.Time, bool) {
	if s.cfg.spares <= 0 || !s.spare.on || s.spare.until.IsZero() || len(s.spareList()) >= s.cfg.spares {
		return time.Time{}, false
	}
	return s.spare.until, true
}

// promoteSpare gives sl a spare, a waiting one first; nil when there is
// none or its promotion failed (the caller starts a worker then).
func (s *supervisor) promoteSpare(sl *slot) *worker {
	list := s.spareList()
	for i, w := range list { // the first waiting one, else the oldest
		if w.warm {
			list[0], list[i] = list[i], list[0]
			break
		}
	}
	for _, w := range list {
		if err := s.procs.promote(w.pid, sl.index); err != nil {
			s.wlog(w).Warn("cannot promote the spare", "slot", sl.index, "err", err)
			continue // its exit is on the way
		}
		w.spare, w.slot, w.started = false, sl.index, s.now()
		s.spare.promoted++
		s.spare.failures = 0
		s.wlog(w).Info("spare promoted", "waited", w.warm)
		if h := s.cfg.hooks.WorkerStarted; h != nil {
			h(sl.index, w.pid, w.gen)
		}
		return w
	}
	return nil
}

// spareExited handles the exit of a spare that was never promoted. Any
// death the master did not ask for (a crash, the OOM killer, a kill at
// -start-timeout) backs the next spare off, growing until a spare is
// promoted: spares that keep dying make no loop.
func (s *supervisor) spareExited(w *worker, status, lastLine string, now time.Time) {
	l := s.wlog(w).With("status", status, "uptime", now.Sub(w.started).Round(time.Millisecond))
	if s.stopping {
		l.Info("spare exited")
		return
	}
	s.spareBackoff()
	l.Warn("spare exited; the next one starts after a backoff", "waited", w.warm, "reason", w.killReason, "last_line", lastLine,
		"retry_in", s.spare.until.Sub(now).Round(time.Millisecond))
}
