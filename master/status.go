package master

// Status is the master's report, served as JSON by the control socket's
// GET /status. Durations are in seconds.
type Status struct {
	PID        int     `json:"pid"`
	Generation int     `json:"generation"`
	Version    string  `json:"version"`
	Uptime     float64 `json:"uptime_seconds"`
	Desired    int     `json:"workers_desired"`
	Upgrading  bool    `json:"upgrading"`
	Stopping   bool    `json:"stopping"`
	// Phase is "loading" while a first master loads its shared state
	// (no slot exists yet), else empty.
	Phase string `json:"phase,omitempty"`
	// StatePages is the page mode of the shared state region: "hugetlb",
	// "thp" or "4k" (empty without a region).
	StatePages string       `json:"state_pages,omitempty"`
	Slots      []SlotStatus `json:"slots"`
	// Draining lists workers that were stopped and have not exited yet.
	Draining []WorkerStatus `json:"draining,omitempty"`
	// Spares lists the warm spares (-spare), and SparesPromoted counts
	// those this master promoted into a slot.
	Spares         []SpareStatus `json:"spares,omitempty"`
	SparesPromoted uint64        `json:"spares_promoted,omitempty"`
	// NotifyRejected counts notifications from pids that are not workers.
	NotifyRejected uint64 `json:"notify_rejected"`
	// NotifyOversized counts datagrams larger than the notify limit (4 KiB),
	// NotifyMalformed those without credentials or assignments; all dropped.
	NotifyOversized uint64 `json:"notify_oversized"`
	NotifyMalformed uint64 `json:"notify_malformed"`
	// StartFailures counts worker processes that could not be started.
	StartFailures uint64 `json:"start_failures"`
	// Upgrades counts this master's upgrades by result (success, failed,
	// rolled_back, refused), Rollbacks its canary rollbacks by cause: as
	// in /metrics, carried across upgrades.
	Upgrades  map[string]uint64 `json:"upgrades,omitempty"`
	Rollbacks map[string]uint64 `json:"rollbacks,omitempty"`
}

// phaseLoading is Status.Phase while the state loads.
const phaseLoading = "loading"

// SpareStatus describes a spare: State is "starting" until it waits for
// its promotion ("waiting").
type SpareStatus struct {
	PID    int     `json:"pid"`
	State  string  `json:"state"`
	Uptime float64 `json:"uptime_seconds"`
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
	// HTTP is set with GET /status?http=1 for slots whose workers report
	// package metrics' HTTP series.
	HTTP *SlotHTTP `json:"http,omitempty"`
}

// SlotHTTP are a slot's HTTP figures, from its workers' metrics (as
// /metrics exports them: counters carried across restarts and upgrades):
// requests served, of them 5xx, requests in flight now, and the request
// duration histogram's cumulative buckets.
type SlotHTTP struct {
	Requests float64      `json:"requests_total"`
	Errors   float64      `json:"errors_5xx_total"`
	InFlight float64      `json:"in_flight"`
	Duration []HTTPBucket `json:"duration_buckets,omitempty"`
}

// HTTPBucket is one cumulative bucket: requests that took at most LE
// seconds ("+Inf" for all).
type HTTPBucket struct {
	LE    string `json:"le"`
	Count uint64 `json:"count"`
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
