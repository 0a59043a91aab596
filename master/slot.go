//go:build linux

package master

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// workerState is where one worker process is in its life.
type workerState int

const (
	starting workerState = iota // started, no READY=1 yet
	ready                       // serving
	stopping                    // SIGTERM sent, draining
)

func (s workerState) String() string {
	switch s {
	case starting:
		return "starting"
	case ready:
		return "ready"
	case stopping:
		return "stopping"
	}
	return "unknown"
}

// worker is one process. It belongs to a slot while it is that slot's
// current worker or the replacement being started for it; a stopping worker
// is detached and only waited for.
type worker struct {
	slot       int
	pid        int
	gen        int
	state      workerState
	started    time.Time
	readyAt    time.Time
	lastBeat   time.Time
	killAt     time.Time // stopping: SIGKILL when the grace runs out
	killed     bool      // SIGKILL sent
	killReason string    // why the master ended it: heartbeat, start-timeout, rolling, scale, shutdown, recycle
	status     string    // last STATUS=
	spare      bool      // a spare not yet promoted (slot -1)
	warm       bool      // a spare that said it waits (X_PREFORKD_SPARE=waiting)
}

// slot is a numbered place for one worker. Its restart backoff survives
// the worker.
type slot struct {
	index    int
	cur      *worker   // nil while in backoff
	next     *worker   // replacement starting (rolling restart, recycling)
	failures int       // consecutive early deaths
	until    time.Time // backoff: start a worker then
	restarts int
	lastExit string
	delay    time.Duration // current backoff delay (0: none)
	// replacing is why sl.next is being started outside a rolling restart
	// (max-rss, max-requests).
	replacing string
}

// exitStatus is how a worker ended.
type exitStatus struct {
	code   int         // exit code, or -1 when killed by a signal
	signal unix.Signal // 0 unless killed by a signal
}

func (e exitStatus) String() string {
	if e.signal != 0 {
		return fmt.Sprintf("killed by signal %d (%s)", int(e.signal), unix.SignalName(e.signal))
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// reason classifies an exit for the restart counters.
func (e exitStatus) reason() string {
	if e.signal != 0 {
		return "signal"
	}
	return "exit"
}

// exitEvent reports a reaped worker.
type exitEvent struct {
	pid      int
	status   exitStatus
	lastLine string // the last line the worker wrote to stderr
}

// noteEvent is a notification received from pid.
type noteEvent struct {
	pid      int
	ready    bool
	watchdog bool
	stopping bool
	status   string
	recycle  string // X_PREFORKD_RECYCLE=<reason>: the worker asks to be replaced
	spare    bool   // X_PREFORKD_SPARE=waiting: a spare has started and waits
}
