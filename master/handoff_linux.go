//go:build linux

package master

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/preforkd/preforkd/metrics"
	"golang.org/x/sys/unix"
)

// handoffName is the tableflip file name of the hand-off socket.
const handoffName = "preforkd-handoff"

// handoffMsg travels between an old master and its successor over a
// SOCK_SEQPACKET socketpair that tableflip passes on like a listener.
// Old → new, before the successor starts: generation and worker count.
// New → old, just before the successor calls Ready: its pid (the old
// master tells systemd MAINPID=). Attempt numbers tell one try from a
// failed earlier one whose message may still be queued.
//
// The same socket then carries metrics totals (Kind set): the successor
// asks ("query") for the old master's current counter totals while that one
// still runs, and gets them one slot per message ("reply", then Done); when
// the old master's workers have all exited it sends its final totals
// ("final", then Done), which the successor carries from then on.
type handoffMsg struct {
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
	Carry    *metrics.Carry    `json:"carry,omitempty"`
	Done     bool              `json:"done,omitempty"`
}

type handoff struct {
	succ *os.File // our end towards successors
	pred *os.File // inherited end towards the predecessor; nil at first start
	n    int      // attempts made
	got  handoffMsg
	wmu  sync.Mutex      // serialises writes to succ
	pids chan handoffMsg // successors' pid announcements, from succLoop
}

func newHandoff(fds *tableflip.Fds) (*handoff, error) {
	h := &handoff{pids: make(chan handoffMsg, 4)} // announcements of a few attempts
	pred, err := fds.File(handoffName)
	if err != nil {
		return nil, fmt.Errorf("hand-off socket: %w", err)
	}
	h.pred = pred
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		h.close()
		return nil, fmt.Errorf("hand-off socket: %w", err)
	}
	h.succ = os.NewFile(uintptr(sp[0]), "handoff")
	theirs := os.NewFile(uintptr(sp[1]), "handoff-peer")
	defer theirs.Close()
	if err := fds.AddFile(handoffName, theirs); err != nil {
		h.close()
		return nil, fmt.Errorf("hand-off socket: %w", err)
	}
	return h, nil
}

// receive reads what the predecessor offered: every queued message, the
// newest attempt winning. (zero, nil) without a predecessor.
func (h *handoff) receive(timeout time.Duration) (handoffMsg, error) {
	if h.pred == nil {
		return handoffMsg{}, nil
	}
	buf := make([]byte, 64<<10)
	h.pred.SetReadDeadline(time.Now().Add(timeout))
	n, err := h.pred.Read(buf)
	if err != nil {
		return handoffMsg{}, fmt.Errorf("hand-off from the previous master: %w", err)
	}
	var best handoffMsg
	json.Unmarshal(buf[:n], &best)
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
		var m handoffMsg
		if json.Unmarshal(buf[:n], &m) == nil && m.Attempt >= best.Attempt {
			best = m
		}
	}
	h.got = best
	return best, nil
}

// announce tells the predecessor our pid. A no-op at first start.
func (h *handoff) announce() error {
	if h.pred == nil {
		return nil
	}
	b, _ := json.Marshal(handoffMsg{Attempt: h.got.Attempt, PID: os.Getpid()})
	h.pred.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := h.pred.Write(b)
	return err
}

// restartCount is one restart counter in a hand-off message.
type restartCount struct {
	Slot   int    `json:"slot"`
	Reason string `json:"reason"`
	N      uint64 `json:"n"`
}

// offer starts an attempt: it queues what the successor needs.
func (h *handoff) offer(msg handoffMsg) error {
	h.n++
	msg.Attempt = h.n
	return h.send(msg)
}

// send writes one message to the successor side.
func (h *handoff) send(m handoffMsg) error {
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
func (h *handoff) successorPid(timeout time.Duration) (int, error) {
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

// closePred closes the socket to the predecessor once it has exited. The
// field keeps its value (other goroutines read it); writes to a closed
// file just fail.
func (h *handoff) closePred() {
	if h.pred != nil {
		h.pred.Close()
	}
}

func (h *handoff) close() error {
	var errs []error
	for _, f := range []*os.File{h.succ, h.pred} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}
