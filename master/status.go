package master

import "sort"

// Status is the master's report, served as JSON by the control socket's
// GET /status. Durations are in seconds.
type Status struct {
	PID        int          `json:"pid"`
	Generation int          `json:"generation"`
	Version    string       `json:"version"`
	Uptime     float64      `json:"uptime_seconds"`
	Desired    int          `json:"workers_desired"`
	Upgrading  bool         `json:"upgrading"`
	Stopping   bool         `json:"stopping"`
	Slots      []SlotStatus `json:"slots"`
	// Draining lists workers that were stopped and have not exited yet.
	Draining []WorkerStatus `json:"draining,omitempty"`
	// NotifyRejected counts notifications from pids that are not workers.
	NotifyRejected uint64 `json:"notify_rejected"`
	// NotifyOversized counts datagrams larger than the notify limit (4 KiB),
	// NotifyMalformed those without credentials or assignments; all dropped.
	NotifyOversized uint64 `json:"notify_oversized"`
	NotifyMalformed uint64 `json:"notify_malformed"`
	// StartFailures counts worker processes that could not be started.
	StartFailures uint64 `json:"start_failures"`
}

// SlotStatus describes one slot.
type SlotStatus struct {
	Slot     int     `json:"slot"`
	PID      int     `json:"pid"` // 0 while in backoff
	State    string  `json:"state"`
	Uptime   float64 `json:"uptime_seconds"`
	Restarts int     `json:"restarts"`
	LastExit string  `json:"last_exit,omitempty"`
	Backoff  float64 `json:"backoff_seconds"`  // current restart delay, 0 if none
	Status   string  `json:"status,omitempty"` // the worker's last STATUS=
	// Replacing is the pid of a replacement being started (rolling restart).
	Replacing int     `json:"replacing,omitempty"`
	Memory    *Memory `json:"memory,omitempty"`
}

// WorkerStatus describes a draining worker.
type WorkerStatus struct {
	Slot   int     `json:"slot"`
	PID    int     `json:"pid"`
	Reason string  `json:"reason"`
	Uptime float64 `json:"uptime_seconds"`
}

// Memory is a worker's memory in bytes, from /proc/<pid>/smaps_rollup.
type Memory struct {
	RSS      uint64 `json:"rss_bytes"`
	PSS      uint64 `json:"pss_bytes"`
	PSSShmem uint64 `json:"pss_shmem_bytes"`
}

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
	for _, w := range s.workers {
		if !attached[w] {
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
