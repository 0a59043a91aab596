package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/preforkd/preforkd/internal/contract"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNotWorker is returned by New in a process that was not started by a
// preforkd master.
var ErrNotWorker = errors.New("worker: not started by a preforkd master (no PREFORK_WORKER)")

// Causes of the context's end (context.Cause).
var (
	ErrTerminated = errors.New("worker: SIGTERM or SIGINT received")
	ErrMasterGone = errors.New("worker: the master is gone")
	ErrClosed     = errors.New("worker: closed")
)

// Options configure a Worker. The zero value works.
type Options struct {
	// Logger for the runtime's own lines. Defaults to slog.Default().
	Logger *slog.Logger
	// Healthy, when set, is asked before each heartbeat; while it returns
	// an error no heartbeat is sent, so the master replaces a worker that
	// stays unhealthy for longer than its heartbeat timeout.
	Healthy func() error
	// Registry is the worker's metrics registry, which the master scrapes;
	// the app registers its own metrics on it. Package server sets one
	// with the Go runtime and process collectors. Nil: the master gets no
	// metrics from this worker.
	Registry *prometheus.Registry
}

// socketSet are the worker's listeners by name.
type socketSet interface {
	Listener(name string) (net.Listener, error)
	PacketConn(name string) (net.PacketConn, error)
	Names() []string
	Close() error
}

// balancer wraps a listener so that this worker takes its share of the
// connections (package internal/balance).
type balancer interface {
	Listener(ln net.Listener) net.Listener
}

// notifier reaches the master's notify socket (a no-op in a local worker).
type notifier interface {
	Send(lines ...string) error
	Close() error
}

// Worker is the runtime of one worker process (or of the app run in the
// calling process, see NewLocal).
type Worker struct {
	opts     Options
	log      *slog.Logger
	slot     int
	gen      int
	grace    time.Duration
	socks    socketSet
	notify   notifier
	watchdog time.Duration
	state    []byte
	unmap    func() error
	metrics  io.Closer // the metrics server; closed first (final snapshot)
	maxReqs  int
	// reqTimeout is the master's -request-timeout (0: none).
	reqTimeout time.Duration
	balance    balancer // nil: listeners as inherited

	lnMu     sync.Mutex
	balanced map[string]net.Listener // by name: one wrapper per listener

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	quit   chan struct{}
	ready  sync.Once
	close  sync.Once
	life   io.Closer // the lifeline pipe (nil in a local worker)
	stop   func()    // stops the signal watch
	readyC chan struct{}
}

// IsWorker reports whether this process was started as a preforkd worker.
func IsWorker() bool { return os.Getenv(contract.Worker) != "" }

// Slot is this worker's slot number (0…N-1); a replacement gets the same.
func (w *Worker) Slot() int { return w.slot }

// Generation is the master generation that started this worker.
func (w *Worker) Generation() int { return w.gen }

// Grace is how long the master lets this worker drain after SIGTERM
// before it kills it (the master's -grace).
func (w *Worker) Grace() time.Duration { return w.grace }

// Context ends when the worker should stop taking new work: on SIGTERM or
// SIGINT (cause ErrTerminated), when the master dies (ErrMasterGone), or at
// Close (ErrClosed).
func (w *Worker) Context() context.Context { return w.ctx }

// Done is Context().Done().
func (w *Worker) Done() <-chan struct{} { return w.ctx.Done() }

// Listener returns the stream listener named name (a -listen name). The
// worker keeps ownership: Close closes it.
//
// In a worker of a master that balances accepts (the default), the
// listener waits before an accept while this worker holds more than its
// share of the connections, and counts the connections it returns until
// they are closed; the same listener is returned for the same name.
func (w *Worker) Listener(name string) (net.Listener, error) {
	ln, err := w.socks.Listener(name)
	if err != nil || w.balance == nil {
		return ln, err
	}
	w.lnMu.Lock()
	defer w.lnMu.Unlock()
	if l, ok := w.balanced[name]; ok {
		return l, nil
	}
	if w.balanced == nil {
		w.balanced = map[string]net.Listener{}
	}
	l := w.balance.Listener(ln)
	w.balanced[name] = l
	return l, nil
}

// PacketConn returns the datagram socket named name; the worker keeps
// ownership.
func (w *Worker) PacketConn(name string) (net.PacketConn, error) { return w.socks.PacketConn(name) }

// Names lists the sockets' names.
func (w *Worker) Names() []string { return w.socks.Names() }

// State is the shared read-only state region, or nil if there is none. A
// write to it faults. It stays mapped until Close: nothing that points
// into it may outlive the worker's Close.
func (w *Worker) State() []byte { return w.state }

// Registry is the worker's metrics registry (Options.Registry), or nil.
func (w *Worker) Registry() *prometheus.Registry { return w.opts.Registry }

// Ready tells the master this worker serves, and starts the heartbeats
// when the master asked for them. Later calls do nothing.
func (w *Worker) Ready() error {
	var err error
	w.ready.Do(func() {
		close(w.readyC)
		err = w.notify.Send("READY=1")
		if w.watchdog > 0 {
			w.wg.Add(1)
			go w.heartbeat()
		}
	})
	return err
}

// IsReady reports whether Ready has been called.
func (w *Worker) IsReady() bool {
	select {
	case <-w.readyC:
		return true
	default:
		return false
	}
}

// MaxRequests is how many requests this worker should serve before it asks
// to be replaced (the master's -max-requests plus up to 10% jitter), or 0.
// Package server's HTTP helper counts them and calls Recycle.
func (w *Worker) MaxRequests() int { return w.maxReqs }

// RequestTimeout is the deadline the master gives every HTTP request
// (-request-timeout; 0: none); server.HTTP enforces it.
func (w *Worker) RequestTimeout() time.Duration { return w.reqTimeout }

// Recycle asks the master to replace this worker gracefully: the master
// starts a replacement, and sends this worker SIGTERM once that one is
// ready. reason is counted in prefork_worker_restarts_total.
func (w *Worker) Recycle(reason string) error {
	return w.notify.Send(contract.RecycleVar + "=" + reason)
}

// Status sends a free-form status line to the master (shown by ctl status).
func (w *Worker) Status(s string) error { return w.notify.Send("STATUS=" + s) }

func (w *Worker) heartbeat() {
	defer w.wg.Done()
	t := time.NewTicker(w.watchdog / 3)
	defer t.Stop()
	for {
		if w.opts.Healthy == nil || w.opts.Healthy() == nil {
			w.notify.Send("WATCHDOG=1")
		}
		select {
		case <-t.C:
		case <-w.quit:
			return
		}
	}
}

// Close sends the master a last metrics snapshot, tells it the worker is
// stopping, stops the runtime's goroutines, closes the sockets and unmaps
// the state. Safe to call twice.
func (w *Worker) Close() error {
	w.close.Do(func() {
		if w.metrics != nil {
			w.metrics.Close() // the drain's counters are not lost
		}
		w.notify.Send("STOPPING=1")
		if w.stop != nil {
			w.stop()
		}
		close(w.quit)
		if w.life != nil {
			w.life.Close()
		}
		w.wg.Wait()
		if w.cancel != nil {
			w.cancel(ErrClosed)
		}
		if w.socks != nil {
			w.socks.Close()
		}
		w.notify.Close()
		if w.unmap != nil {
			w.unmap()
		}
	})
	return nil
}

// newWorker is the part of a Worker common to both kinds.
func newWorker(opts Options) *Worker {
	w := &Worker{opts: opts, log: opts.Logger, quit: make(chan struct{}), readyC: make(chan struct{}),
		notify: nopNotifier{}, socks: noSockets{}}
	if w.log == nil {
		w.log = slog.Default()
	}
	w.ctx, w.cancel = context.WithCancelCause(context.Background())
	return w
}

type nopNotifier struct{}

func (nopNotifier) Send(...string) error { return nil }
func (nopNotifier) Close() error         { return nil }

type noSockets struct{}

func (noSockets) Listener(name string) (net.Listener, error) {
	return nil, errors.New("worker: no listener named " + name)
}
func (noSockets) PacketConn(name string) (net.PacketConn, error) {
	return nil, errors.New("worker: no socket named " + name)
}
func (noSockets) Names() []string { return nil }
func (noSockets) Close() error    { return nil }
