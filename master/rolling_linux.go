//go:build linux

package master

import (
	"fmt"
)

// rolling is a rolling restart in progress.
type rolling struct {
	queue   []int
	pending *worker
	reason  string
	reply   []chan error
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
