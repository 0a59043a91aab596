// Package contract names what a master hands a worker: the environment
// variables and notification fields of the master → worker hand-off. Both
// sides import these names from here, so that they cannot drift.
//
// The listening sockets use systemd's socket-activation variables
// (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID; see package listener) and
// readiness uses sd_notify (NOTIFY_SOCKET, WATCHDOG_USEC); the names below
// are preforkd's own additions.
package contract

// systemd's socket-activation variables (sd_listen_fds(3)), which the
// master sets for every worker, and which a master started by systemd
// reads.
const (
	ListenFds     = "LISTEN_FDS"
	ListenFdNames = "LISTEN_FDNAMES"
	ListenPid     = "LISTEN_PID"
)

// Environment variables set for every worker.
const (
	// Worker is the worker's slot number; its presence marks a worker.
	Worker = "PREFORK_WORKER"
	// Generation is the master generation the worker belongs to (1, 2, …).
	Generation = "PREFORK_GENERATION"
	// StateFd and StateSize announce the sealed shared-state memfd.
	StateFd   = "PREFORK_STATE_FD"
	StateSize = "PREFORK_STATE_SIZE"
	// MetricsFd is the worker's end of the metrics socketpair.
	MetricsFd = "PREFORK_METRICS_FD"
	// MasterFd is the read end of the lifeline pipe: EOF means the
	// master is gone.
	MasterFd = "PREFORK_MASTER_FD"
	// MasterPid is the master's pid.
	MasterPid = "PREFORK_MASTER_PID"
	// Grace is the drain time the master allows (a time.Duration string).
	Grace = "PREFORK_GRACE"
	// BalanceFd is the board of connection counters that Go workers share
	// to spread connections evenly (package internal/balance).
	BalanceFd = "PREFORK_BALANCE_FD"
	// MaxRequests asks a Go worker to be recycled after about this many
	// requests.
	MaxRequests = "PREFORK_MAX_REQUESTS"
	// RequestTimeout is the request deadline of Go HTTP workers (a Go
	// duration).
	RequestTimeout = "PREFORK_REQUEST_TIMEOUT"
	// SpareFd is the read end of a spare's promotion pipe: a spare (a Go
	// worker started ahead of need, -spare) waits, before its app runs,
	// for one line there: the slot it now serves (its Worker value is -1
	// until then). EOF means the master is gone.
	SpareFd = "PREFORK_SPARE_FD"
	// ExecShim marks the exec-shim role: set LISTEN_PID, then exec the
	// external command.
	ExecShim = "PREFORK_EXEC_SHIM"
	// Prefix is what every preforkd variable starts with; a worker's
	// environment loses all of them before its own children start.
	Prefix = "PREFORK_"
)

// Tableflip is the variable with which tableflip marks an upgraded
// master. A worker must never inherit it, or it takes itself for an
// upgraded master.
const Tableflip = "TABLEFLIP_HAS_PARENT_7DIU3"

// RecycleVar is the sd_notify variable with which a worker asks to be
// replaced gracefully ("X_PREFORKD_RECYCLE=1"): its replacement is started
// and made ready first.
const RecycleVar = "X_PREFORKD_RECYCLE"

// SpareVar is the sd_notify variable with which a spare says it has
// started and waits for its promotion ("X_PREFORKD_SPARE=waiting").
const SpareVar = "X_PREFORKD_SPARE"
