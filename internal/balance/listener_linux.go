//go:build linux

package balance

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Policy tunes when a worker leaves the queue to the others. The zero
// value uses the defaults.
type Policy struct {
	// MaxWait is the longest a worker over its share waits before it
	// accepts anyway. Defaults to 5ms.
	MaxWait time.Duration
	// Slack is how many connections a worker may have accepted beyond the
	// average of the workers accepting now. Defaults to 2.
	Slack int64
	// Recent is how long after its last accept a worker still counts as
	// accepting. Defaults to 20ms.
	Recent time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.MaxWait <= 0 {
		p.MaxWait = 5 * time.Millisecond
	}
	if p.Slack <= 0 {
		p.Slack = 2
	}
	if p.Recent <= 0 {
		p.Recent = 20 * time.Millisecond
	}
	return p
}

// MinOpen is how many open connections a worker holds before the open
// rule applies: below it the connections are short-lived (one request
// each), and waiting would cost throughput for no gain.
const MinOpen = 4

// pollEvery is how often a waiting worker looks at the board again.
const pollEvery = 50 * time.Microsecond

// Worker is one worker's place on the board, shared by its listeners.
type Worker struct {
	b      *Board
	e      *entry
	policy Policy
	mu     sync.Mutex
	lns    int // listeners not yet closed
}

// Join claims an entry for the worker pid. It returns nil when the board
// is full (the worker then accepts without balancing).
func (b *Board) Join(pid int, p Policy) *Worker {
	e := b.claim(pid)
	if e == nil {
		return nil
	}
	return &Worker{b: b, e: e, policy: p.withDefaults()}
}

// Listener wraps ln: Accept waits while this worker is over its share,
// and the connections it returns are counted until closed. The worker
// counts in the others' averages from its first listener until its last
// one is closed.
func (w *Worker) Listener(ln net.Listener) net.Listener {
	w.mu.Lock()
	if w.lns++; w.lns == 1 {
		// Counted from its first listener on: a worker still starting
		// (or serving none) would pull the average down and make the
		// others wait.
		w.e.active.Store(1)
	}
	w.mu.Unlock()
	return &listener{Listener: ln, w: w}
}

// over reports whether the worker is over its share now.
func (w *Worker) over(now int64) bool {
	p := w.b.peers(w.e, now-int64(w.policy.Recent))
	if p.n == 0 {
		return false
	}
	myOpen := w.e.open.Load()
	if myOpen >= MinOpen && float64(myOpen) > float64(p.open+myOpen)/float64(p.n+1)+1 {
		return true
	}
	if p.live == 0 || Mode(w.b.header().mode.Load()) != Accepts {
		return false
	}
	myAcc := w.e.accepted.Load()
	avg := (p.accepted + myAcc) / int64(p.live+1)
	if myAcc < avg-w.policy.Slack {
		// Far behind (it was busy or new): forgive the debt, so that it
		// does not take every connection until it has caught up.
		w.e.accepted.CompareAndSwap(myAcc, avg-w.policy.Slack)
		return false
	}
	return myAcc > avg+w.policy.Slack
}

// waitTurn returns once the worker is not over its share, or after
// MaxWait.
func (w *Worker) waitTurn() {
	now := monotonic()
	for deadline := now + int64(w.policy.MaxWait); now < deadline && w.over(now); now = monotonic() {
		time.Sleep(pollEvery)
	}
}

func (w *Worker) accepted() {
	w.e.last.Store(monotonic())
	w.e.accepted.Add(1)
	w.e.open.Add(1)
}

func (w *Worker) listenerClosed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lns--; w.lns == 0 {
		w.e.active.Store(0)
	}
}

type listener struct {
	net.Listener
	w      *Worker
	closed atomic.Bool
}

func (l *listener) Accept() (net.Conn, error) {
	l.w.waitTurn()
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.w.accepted()
	return &conn{Conn: c, open: &l.w.e.open}, nil
}

func (l *listener) Close() error {
	if !l.closed.Swap(true) {
		l.w.listenerClosed()
	}
	return l.Listener.Close()
}

// conn counts itself out of its worker's open connections when closed.
type conn struct {
	net.Conn
	open   *atomic.Int64
	closed atomic.Bool
}

func (c *conn) Close() error {
	if !c.closed.Swap(true) {
		c.open.Add(-1)
	}
	return c.Conn.Close()
}

// ReadFrom keeps the connection's own (sendfile, splice) where it has one.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite half-closes the connection, as a TCP one can.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
