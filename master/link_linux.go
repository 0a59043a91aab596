//go:build linux

package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/preforkd/preforkd/internal/aggregate"
	"golang.org/x/sys/unix"
)

// linkName is the tableflip file name of the succession link's socket.
//
// The name dates from before the link had its own name; it is what a
// master of the previous release passes on, so it stays.
const linkName = "preforkd-handoff"

// fileStore is what the link needs of tableflip's Fds.
type fileStore interface {
	File(name string) (*os.File, error)
	AddFile(name string, f *os.File) error
}

// linkMsg is the one message type of the succession link: a SOCK_SEQPACKET
// socketpair between a master and its successor, which tableflip passes on
// like a listener. Each message is one JSON record of at most maxLinkMsg
// bytes; Kind says what it is:
//
//	""      old → new, before the successor starts ("offer"): generation,
//	        worker count, restart and upgrade counters.
//	        new → old, just before the successor calls Ready ("announce"):
//	        its PID; the old master tells systemd MAINPID= and stops
//	        serving /metrics.
//	"query" new → old: send your current metrics totals (ID pairs the reply).
//	"reply" old → new: one slot's totals per message, then one with Done.
//	"final" old → new, once its workers have all exited: its final totals,
//	        then Done; the successor carries them from then on.
//	"fresh" new → old: like "query", but scrape your workers first (a
//	        canary's figures are compared over a window).
//	"rollback" new → old, before a new master whose canary failed exits:
//	        Cause and Reason, which the old master logs and reports.
//	"retire" new → old (surge): stop one of your workers; "retired"
//	        old → new once it has exited (PID; 0 if none could be).
//
// Attempt numbers tell one upgrade attempt from a failed earlier one whose
// offer may still be queued.
type linkMsg struct {
	Attempt    int `json:"attempt"`
	Generation int `json:"generation,omitempty"`
	Workers    int `json:"workers,omitempty"`
	PID        int `json:"pid,omitempty"`
	// Restarts and Upgrades are the old master's counters, which the new
	// master continues (so that they never go backwards at an upgrade).
	Restarts []restartCount    `json:"restarts,omitempty"`
	Upgrades map[string]uint64 `json:"upgrades,omitempty"`
	Kind     string            `json:"kind,omitempty"`
	ID       int               `json:"id,omitempty"`
	Carry    *aggregate.Carry  `json:"carry,omitempty"`
	Done     bool              `json:"done,omitempty"`
	// CanaryMs is the canary duration of this upgrade, in milliseconds
	// (offer; 0: none). Rollbacks are the old master's rollback counters
	// by cause (offer), carried on like Upgrades.
	CanaryMs  int64             `json:"canary_ms,omitempty"`
	Rollbacks map[string]uint64 `json:"rollbacks,omitempty"`
	// Surge is the upgrade's surge (offer; 0: all workers at once).
	Surge int `json:"surge,omitempty"`
	// Cause and Reason say why a canary failed (rollback).
	Cause  string `json:"cause,omitempty"`
	Reason string `json:"reason,omitempty"`
	// BeganNs is when the old master began this upgrade (offer; Unix
	// nanoseconds), for the new master's phase times.
	BeganNs int64 `json:"began_ns,omitempty"`
	// StateKey, StateFile and StateSize describe the old master's state
	// region (offer): Config.StateKey's answer when it was built, its
	// tableflip file name, and its size. A new master whose own key is
	// the same takes the region over instead of building it again.
	StateKey  string `json:"state_key,omitempty"`
	StateFile string `json:"state_file,omitempty"`
	StateSize int64  `json:"state_size,omitempty"`
	// StatePages is the region's page mode (offer), which a successor
	// that takes it over reports as its own.
	StatePages string `json:"state_pages,omitempty"`
}

// link is a master's end of the succession links: succ towards its
// successors (one per upgrade attempt, over the same socket), pred towards
// its predecessor (nil at a first start). Its goroutines (serveSuccessor,
// and followPredecessor in a new master) stop at close.
type link struct {
	succ    *os.File // our end towards successors
	pred    *os.File // inherited end towards the predecessor; nil at first start
	log     *slog.Logger
	n       int // attempts made
	got     linkMsg
	wmu     sync.Mutex   // serialises writes to succ
	pmu     sync.Mutex   // serialises writes to pred
	pids    chan linkMsg // successors' pid announcements, from serveSuccessor
	rbs     chan linkMsg // successors' rollback messages, from serveSuccessor
	retired chan linkMsg // the predecessor's "retired" answers (surge), from followPredecessor
	// onRetire and awaitExit serve a successor's "retire" (surge): stop
	// one worker, and wait for its exit. Set before serveSuccessor.
	onRetire  func() (pid int, err error)
	awaitExit func(pid int)
	predQuery func(ctx context.Context, kind string) (*aggregate.Carry, error) // set by followPredecessor
	quit      chan struct{}
	wg        sync.WaitGroup
	// bad counts undecodable messages (logged once).
	bad atomic.Uint64
}

func newLink(fds fileStore, log *slog.Logger) (*link, error) {
	h := &link{log: log, pids: make(chan linkMsg, 4), rbs: make(chan linkMsg, 4), retired: make(chan linkMsg, MaxWorkers), quit: make(chan struct{})} // announcements of a few attempts
	pred, err := fds.File(linkName)
	if err != nil {
		return nil, fmt.Errorf("succession link: %w", err)
	}
	h.pred = pred
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		h.close()
		return nil, fmt.Errorf("succession link: %w", err)
	}
	h.succ = os.NewFile(uintptr(sp[0]), "succession")
	theirs := os.NewFile(uintptr(sp[1]), "succession-peer")
	defer theirs.Close()
	if err := fds.AddFile(linkName, theirs); err != nil {
		h.close()
		return nil, fmt.Errorf("succession link: %w", err)
	}
	return h, nil
}

// receive reads what the predecessor offered: every queued message, the
// newest attempt winning. (zero, nil) without a predecessor.
func (h *link) receive(timeout time.Duration) (linkMsg, error) {
	if h.pred == nil {
		return linkMsg{}, nil
	}
	buf := make([]byte, 64<<10)
	h.pred.SetReadDeadline(time.Now().Add(timeout))
	n, err := h.pred.Read(buf)
	if err != nil {
		return linkMsg{}, fmt.Errorf("hand-over from the previous master: %w", err)
	}
	var best linkMsg
	if err := json.Unmarshal(buf[:n], &best); err != nil {
		return linkMsg{}, fmt.Errorf("hand-over from the previous master: %w", err)
	}
	// A failed attempt's offer may sit before ours: take every message
	// already queued, without waiting for more (one non-blocking read each;
	// a deadline in the past would make the poller refuse to read at all).
	rc, err := h.pred.SyscallConn()
	for err == nil {
		var rerr error
		n = 0
		rc.Read(func(fd uintptr) bool { n, rerr = unix.Read(int(fd), buf); return true })
		if rerr != nil || n <= 0 {
			break
		}
		if m, ok := h.decode(buf[:n]); ok && m.Attempt >= best.Attempt {
			best = m
		}
	}
	h.got = best
	return best, nil
}

// announce tells the predecessor our pid. A no-op at first start.
func (h *link) announce() error {
	return h.toPred(linkMsg{Attempt: h.got.Attempt, PID: os.Getpid()}, time.Second)
}

// toPred writes one message to the predecessor (a no-op without one),
// giving up after timeout.
func (h *link) toPred(m linkMsg, timeout time.Duration) error {
	if h.pred == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	h.pmu.Lock()
	defer h.pmu.Unlock()
	h.pred.SetWriteDeadline(time.Now().Add(timeout))
	_, err = h.pred.Write(b)
	return err
}

// restartCount is one restart counter in an offer.
type restartCount struct {
	Slot   int    `json:"slot"`
	Reason string `json:"reason"`
	N      uint64 `json:"n"`
}

// offer starts an attempt: it queues what the successor needs.
func (h *link) offer(msg linkMsg) error {
	h.n++
	msg.Attempt = h.n
	return h.send(msg)
}

// send writes one message to the successor side.
func (h *link) send(m linkMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	h.wmu.Lock()
	defer h.wmu.Unlock()
	h.succ.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err = h.succ.Write(b)
	return err
}

// successorPid waits for the successor's pid of the current attempt
// (succLoop reads the socket and hands announcements over).
func (h *link) successorPid(timeout time.Duration) (int, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case m := <-h.pids:
			if m.Attempt == h.n {
				return m.PID, nil
			}
		case <-t.C:
			return 0, errors.New("the new master did not say its pid")
		}
	}
}

// rollback tells the predecessor that this new master's canary failed;
// it exits next.
func (h *link) rollback(cause, reason string) error {
	return h.toPred(linkMsg{Attempt: h.got.Attempt, Kind: "rollback", Cause: cause, Reason: reason}, time.Second)
}

// rolledBack returns the current attempt's rollback message, waiting up
// to timeout for it (it is sent just before the new master exits, so it
// may still be on its way when tableflip reports the exit).
func (h *link) rolledBack(timeout time.Duration) (linkMsg, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case m := <-h.rbs:
			if m.Attempt == h.n {
				return m, true
			}
		case <-t.C:
			return linkMsg{}, false
		}
	}
}

// closePred closes the socket to the predecessor once it has exited. The
// field keeps its value (other goroutines read it); writes to a closed
// file just fail.
func (h *link) closePred() {
	if h.pred != nil {
		h.pred.Close()
	}
}

func (h *link) close() error {
	select {
	case <-h.quit:
	default:
		close(h.quit)
	}
	var errs []error
	for _, f := range []*os.File{h.succ, h.pred} {
		if f != nil {
			if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				errs = append(errs, err) // pred may be closed already (closePred)
			}
		}
	}
	h.wg.Wait()
	return errors.Join(errs...)
}

// decode parses one message; an undecodable one (a bug or a version skew
// between two masters) is counted and logged once, never acted on.
func (h *link) decode(b []byte) (linkMsg, bool) {
	var m linkMsg
	if err := json.Unmarshal(b, &m); err != nil {
		if h.bad.Add(1) == 1 {
			h.log.Warn("undecodable message on the succession link ignored (logged once)", "err", err, "bytes", len(b))
		}
		return linkMsg{}, false
	}
	return m, true
}

// dropStaleAnnouncements discards pid announcements of earlier, failed
// attempts (and their rollbacks); call it before a new attempt.
func (h *link) dropStaleAnnouncements() {
	for len(h.pids) > 0 {
		<-h.pids
	}
	for len(h.rbs) > 0 {
		<-h.rbs
	}
}
