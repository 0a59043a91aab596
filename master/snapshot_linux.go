//go:build linux

package master

import (
	"sort"
)

// snapshot reads the supervisor's state; call it in the owner goroutine.
func (s *supervisor) snapshot() Status {
	now := s.now()
	st := Status{
		Generation:     s.cfg.gen,
		Desired:        s.desired,
		Stopping:       s.stopping,
		NotifyRejected: s.stats.notifyRejected,
		StartFailures:  s.stats.startFailures,
	}
	attached := map[*worker]bool{}
	for _, sl := range s.slots {
		ss := SlotStatus{Slot: sl.index, Restarts: sl.restarts, LastExit: sl.lastExit, Backoff: sl.delay.Seconds(), State: "backoff"}
		if w := sl.cur; w != nil {
			attached[w] = true
			ss.PID, ss.State, ss.Uptime, ss.Status = w.pid, w.state.String(), now.Sub(w.started).Seconds(), w.status
		}
		if w := sl.next; w != nil {
			attached[w] = true
			ss.Replacing = w.pid
		}
		st.Slots = append(st.Slots, ss)
	}
	for _, w := range s.spareList() {
		state := "starting"
		if w.warm {
			state = "waiting"
		}
		st.Spares = append(st.Spares, SpareStatus{PID: w.pid, State: state, Uptime: now.Sub(w.started).Seconds()})
	}
	st.SparesPromoted = s.spare.promoted
	for _, w := range s.workers {
		if !attached[w] && !w.spare {
			st.Draining = append(st.Draining, WorkerStatus{Slot: w.slot, PID: w.pid, Reason: w.killReason, Uptime: now.Sub(w.started).Seconds()})
		}
	}
	sort.Slice(st.Draining, func(i, j int) bool { return st.Draining[i].PID < st.Draining[j].PID })
	return st
}

// counters are the supervisor's counters for metrics.
type counters struct {
	Restarts map[restartKey]uint64
}

// takeCounters copies the restart counters.
func (s *supervisor) takeCounters() counters {
	c := counters{Restarts: make(map[restartKey]uint64, len(s.stats.restarts))}
	for k, v := range s.stats.restarts {
		c.Restarts[k] = v
	}
	return c
}
