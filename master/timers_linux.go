//go:build linux

package master

import (
	"time"
)

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
		if t, ok := s.spareDue(); ok {
			set(t)
		}
	}
	for _, w := range s.workers {
		switch w.state {
		case stopping:
			if !w.killed {
				set(w.killAt)
			}
		case starting:
			if w.spare && w.warm {
				continue // waits for its promotion as long as it takes
			}
			if s.cfg.readyDelay > 0 && !w.spare {
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
	s.keepSpares()
	for _, w := range s.workers {
		switch w.state {
		case stopping:
			if !w.killed && !now.Before(w.killAt) {
				s.wlog(w).Warn("grace period over; killing worker", "grace", s.cfg.grace)
				s.kill(w, w.killReason)
			}
		case starting:
			if w.spare && w.warm {
				continue
			}
			if s.cfg.readyDelay > 0 && !w.spare && now.Sub(w.started) >= s.cfg.readyDelay {
				s.markReady(w, now)
			} else if s.cfg.startTimeout > 0 && now.Sub(w.started) >= s.cfg.startTimeout {
				s.wlog(w).Error("worker not ready in time; killing it: "+s.readyHint(), "start_timeout", s.cfg.startTimeout)
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

// checkPaused restarts the heartbeat watch when the master itself did not
// run for a while (SIGSTOP, a paused VM, a starved host): it woke, for
// whatever event, more than half a heartbeat after its timer (armed at
// armedAt for due) was due. The workers' beats could not be read meanwhile,
// so their silence says nothing; without this, every healthy worker would
// be killed on resume. It runs before the event that woke the loop, because
// after a pause the queued heartbeats are often read before the timer.
func (s *supervisor) checkPaused(due, armedAt time.Time) {
	if s.cfg.heartbeat <= 0 {
		return
	}
	now := s.now()
	late := now.Sub(due)
	if armedAt.After(due) {
		late = now.Sub(armedAt) // due already when armed: not a pause
	}
	if late <= s.cfg.heartbeat/2 {
		return
	}
	s.log.Warn("the master did not run for a while; restarting the heartbeat watch", "late", late.Round(time.Millisecond))
	for _, w := range s.workers {
		if w.state == ready {
			w.lastBeat = now
		}
	}
}
