//go:build linux

package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// upgrader is what an upgrade needs of tableflip (*tableflip.Upgrader
// satisfies it). Upgrade execs the new master and returns nil once it called
// Ready, or an error when it could not start, exited, or was not ready in
// time (tableflip kills it then). Stop makes a running Upgrade return.
type upgrader interface {
	Upgrade() error
	Ready() error
	Stop()
	HasParent() bool
	WaitForParent(ctx context.Context) error
}

// successorLink is what an upgrade needs of the succession link: offer
// queues what the next master reads at its start (beginning a new
// attempt), and successorPid waits for the pid it announces just before it
// becomes ready.
type successorLink interface {
	offer(linkMsg) error
	successorPid(timeout time.Duration) (int, error)
	// rolledBack returns the rollback message of the current attempt, if
	// its new master sent one (waiting up to timeout).
	rolledBack(timeout time.Duration) (linkMsg, bool)
}

// notifier tells the service manager (systemd) what happens; a nil
// *sdnotify.Conn is a valid no-op one.
type notifier interface {
	Send(lines ...string) error
}

// gate is what decides whether an upgrade may begin now.
type gate struct {
	stopping   bool // this master is stopping
	ready      bool // this master's first workers were all ready
	parentGone bool // the previous master (if any) has exited
	pid1       bool // this master is PID 1 (a container's init)
}

// refusal is why an upgrade may not begin, or "".
func (g gate) refusal() string {
	switch {
	case g.stopping:
		return "this master is stopping"
	case g.pid1:
		// The old master exits after the hand-over, and PID 1 exiting
		// ends the container: run under an init (docker run --init, tini)
		// to upgrade in place, or use a rolling restart (SIGUSR1).
		return "running as PID 1; upgrading would end the container (use an init such as tini, or SIGUSR1)"
	case !g.ready:
		return "this master is not ready yet"
	case !g.parentGone:
		return "the previous master is still draining"
	}
	return ""
}

// upgrade is the upgrade state machine of one master: idle → running →
// (handed over | failed → idle). Its methods other than running and close
// are called from the master's loop goroutine; the loop receives each
// outcome from results and passes it to finished. At most one Upgrade call
// runs at a time, in a goroutine that close waits for.
type upgrade struct {
	upg  upgrader
	next successorLink
	sd   notifier
	log  *slog.Logger
	now  func() time.Time
	gen  int

	results chan error // the outcome of the running Upgrade call
	wg      sync.WaitGroup
	// active is true from begin until finished; the orphan reaper reads
	// it (tableflip reaps the new master itself meanwhile).
	active     atomic.Bool
	began      time.Time
	replies    []chan error
	counts     map[string]uint64 // by result: success, failed, rolled_back, refused
	rollbacks  map[string]uint64 // by cause: start, crash, 5xx, latency
	handedOver bool
	stopping   bool
	pidFile    string
}

// upgradeResults are the results counted in prefork_upgrades_total.
var upgradeResults = []string{"success", "failed", "rolled_back", "refused"}

// newUpgrade makes the upgrade part; pidFile is the master's pid file
// ("" for none), which decides how the service manager learns of the new
// master (see finished).
func newUpgrade(upg upgrader, next successorLink, sd notifier, log *slog.Logger, gen int, counts map[string]uint64, pidFile string) *upgrade {
	u := &upgrade{upg: upg, next: next, sd: sd, log: log, now: time.Now, gen: gen, pidFile: pidFile,
		results: make(chan error, 1), counts: map[string]uint64{}, rollbacks: map[string]uint64{}}
	maps.Copy(u.counts, counts)
	return u
}

// running reports whether an upgrade is in flight; safe from any goroutine.
func (u *upgrade) running() bool { return u.active.Load() }

// begin starts an upgrade unless g refuses it. offer builds what the new
// master is handed (called only when the upgrade begins). reply, when not
// nil, gets the outcome: at once for a refusal, else when finished.
func (u *upgrade) begin(g gate, offer func() linkMsg, reply chan error) {
	refuse := g.refusal()
	if refuse == "" && u.active.Load() {
		refuse = "an upgrade is already running"
	}
	if refuse != "" {
		u.log.Warn("upgrade refused: " + refuse)
		u.counts["refused"]++
		if reply != nil {
			reply <- errors.New(refuse)
		}
		return
	}
	u.active.Store(true)
	u.began = u.now()
	if reply != nil {
		u.replies = append(u.replies, reply)
	}
	msg := offer()
	msg.Generation = u.gen
	msg.BeganNs = u.began.UnixNano()
	msg.Upgrades = maps.Clone(u.counts)
	if msg.Upgrades == nil {
		msg.Upgrades = map[string]uint64{}
	}
	msg.Upgrades["success"]++ // counted by the successor, which exists only if this one succeeds
	msg.Rollbacks = maps.Clone(u.rollbacks)
	if err := u.next.offer(msg); err != nil {
		// The new master then starts as generation 1 with the configured
		// worker count: worse figures, but it serves.
		u.log.Warn("cannot queue the hand-over for the new master", "err", err)
	}
	u.sd.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10), "STATUS=upgrading")
	u.log.Info("upgrade begins", "generation", u.gen)
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		u.results <- u.upg.Upgrade() // buffered: never blocks
	}()
}

// finished handles the outcome of the running upgrade; true means a new
// master now serves and this one must drain and exit.
func (u *upgrade) finished(err error) bool {
	u.active.Store(false)
	took := u.now().Sub(u.began).Round(time.Millisecond)
	replies := u.replies
	u.replies = nil
	if err != nil && !u.stopping {
		if rb, ok := u.next.rolledBack(300 * time.Millisecond); ok {
			u.counts["rolled_back"]++
			u.rollbacks[rb.Cause]++
			u.log.Error("upgrade rolled back: "+rb.Reason, "cause", rb.Cause, "took", took)
			u.sd.Send("READY=1", "STATUS=serving, generation "+strconv.Itoa(u.gen)+" (upgrade rolled back: "+rb.Reason+")")
			for _, r := range replies {
				r <- errors.New("upgrade rolled back: " + rb.Reason)
			}
			return false
		}
	}
	if err != nil {
		u.counts["failed"]++
		if u.stopping {
			u.log.Info("upgrade abandoned: stopping", "err", err)
		} else {
			u.log.Error("upgrade failed; this generation keeps serving", "err", err, "took", took)
			u.sd.Send("READY=1", "STATUS=serving, generation "+strconv.Itoa(u.gen)+" (upgrade failed)")
		}
		for _, r := range replies {
			r <- fmt.Errorf("upgrade failed: %w", err)
		}
		return false
	}
	u.counts["success"]++
	u.handedOver = true
	pid, perr := u.next.successorPid(2 * time.Second)
	switch {
	case perr == nil && u.pidFile != "":
		// No MAINPID=: systemd would take the new master, our child, as an
		// "alien" main process that it cannot wait for, and a later stop
		// would SIGKILL the whole unit at once. With PIDFile= it re-reads
		// the pid file when we (its child) exit; by then the new master,
		// which wrote it, has been re-parented to systemd: a child it
		// supervises like the first.
		u.sd.Send("READY=1", "STATUS=handed over to pid "+strconv.Itoa(pid)+"; draining")
	case perr == nil:
		u.sd.Send("MAINPID="+strconv.Itoa(pid), "READY=1", "STATUS=handed over to pid "+strconv.Itoa(pid))
	default:
		u.log.Warn("the new master serves but did not say its pid; the service manager keeps this pid as main", "err", perr)
	}
	u.log.Info("upgrade done; draining this generation", "new_master", pid, "took", took)
	for _, r := range replies {
		r <- nil
	}
	return true
}

// abandon is called once when the master begins to stop: a stop wins over
// an upgrade in flight (tableflip kills the new master, and Upgrade
// returns an error, which the loop still passes to finished).
func (u *upgrade) abandon() {
	u.stopping = true
	if u.active.Load() {
		u.log.Info("stopping: abandoning the upgrade in progress")
		u.upg.Stop()
	}
}

// snapshot copies the counters by result and the rollbacks by cause.
func (u *upgrade) snapshot() (results, rollbacks map[string]uint64) {
	return maps.Clone(u.counts), maps.Clone(u.rollbacks)
}

// close waits for the Upgrade call, if one runs (after abandon, it
// returns promptly).
func (u *upgrade) close() { u.wg.Wait() }
