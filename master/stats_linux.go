//go:build linux

package master

// carryRestarts continues the restart counters of the previous master
// (call before run).
func (s *supervisor) carryRestarts(rs []restartCount) {
	for _, r := range rs {
		s.stats.restarts[restartKey{r.Slot, r.Reason}] += r.N
	}
}

// restartCounts copies the restart counters, to hand them to a new master.
func (s *supervisor) restartCounts() []restartCount {
	out := make([]restartCount, 0, len(s.stats.restarts))
	for k, v := range s.stats.restarts {
		out = append(out, restartCount{Slot: k.slot, Reason: k.reason, N: v})
	}
	return out
}

// readyCount is the number of slots whose current worker is ready.
func (s *supervisor) readyCount() int {
	n := 0
	for _, sl := range s.slots {
		if sl.cur != nil && sl.cur.state == ready {
			n++
		}
	}
	return n
}
