//go:build linux

package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"github.com/preforkd/preforkd/internal/sdnotify"
	"github.com/preforkd/preforkd/listener"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Environment set by the master (DESIGN.md, "Contract: master → worker").
const (
	envWorker     = "PREFORK_WORKER"
	envGeneration = "PREFORK_GENERATION"
	envStateFd    = "PREFORK_STATE_FD"
	envStateSize  = "PREFORK_STATE_SIZE"
	envMetricsFd  = "PREFORK_METRICS_FD"
	envMasterFd   = "PREFORK_MASTER_FD"
	envMasterPid  = "PREFORK_MASTER_PID"
	envGrace      = "PREFORK_GRACE"
	envMaxReqs    = "PREFORK_MAX_REQUESTS"
	recycleVar    = "X_PREFORKD_RECYCLE"
)

// ErrNotWorker is returned by New in a process that was not started by a
// preforkd master.
var ErrNotWorker = errors.New("worker: not started by a preforkd master (no PREFORK_WORKER)")

// Options configure a Worker. The zero value works.
type Options struct {
	// Logger for the runtime's own lines. Defaults to slog.Default().
	Logger *slog.Logger
	// Healthy, when set, is asked before each heartbeat; while it returns
	// an error no heartbeat is sent, so the master replaces a worker that
	// stays unhealthy for longer than its heartbeat timeout.
	Healthy func() error
	// MapState maps the shared state region; set by package server.
	// Defaults to no mapping (State returns nil).
	MapState func(fd int, size int64) (data []byte, unmap func() error, err error)
	// Registry is the worker's metrics registry, which the master scrapes
	// over PREFORK_METRICS_FD; the app registers its own metrics on it.
	// Package server sets one with the Go runtime and process collectors.
	Registry *prometheus.Registry
}

// Worker is the runtime of one worker process.
type Worker struct {
	opts     Options
	log      *slog.Logger
	slot     int
	gen      int
	grace    time.Duration
	in       *listener.Inherited
	notify   *sdnotify.Conn
	watchdog time.Duration
	state    []byte
	unmap    func() error
	metrics  *os.File
	maxReqs  int

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	quit   chan struct{}
	ready  sync.Once
	close  sync.Once
	life   *os.File
	sigs   chan os.Signal
}

// Causes of the context's end (context.Cause).
var (
	ErrTerminated = errors.New("worker: SIGTERM or SIGINT received")
	ErrMasterGone = errors.New("worker: the master is gone")
	ErrClosed     = errors.New("worker: closed")
)

// IsWorker reports whether this process was started as a preforkd worker.
func IsWorker() bool { return os.Getenv(envWorker) != "" }

// New takes over what the master handed this process and unsets the
// contract's environment variables, so that the worker's own children don't
// inherit them. It starts watching for SIGTERM/SIGINT and for the master's
// death. Call Close when done.
func New(opts Options) (*Worker, error) {
	if !IsWorker() {
		return nil, ErrNotWorker
	}
	w := &Worker{opts: opts, log: opts.Logger, quit: make(chan struct{})}
	if w.log == nil {
		w.log = slog.Default()
	}
	get := func(k string) string { v := os.Getenv(k); os.Unsetenv(k); return v }
	var err error
	w.slot, _ = strconv.Atoi(get(envWorker))
	w.gen, _ = strconv.Atoi(get(envGeneration))
	if w.grace, err = time.ParseDuration(get(envGrace)); err != nil || w.grace <= 0 {
		w.grace = 30 * time.Second
	}
	w.log = w.log.With("slot", w.slot, "pid", os.Getpid(), "generation", w.gen)
	stateFd, stateSize, metricsFd, masterFd := get(envStateFd), get(envStateSize), get(envMetricsFd), get(envMasterFd)
	get(envMasterPid)
	notifyAddr := get("NOTIFY_SOCKET")
	if us, err := strconv.ParseInt(get("WATCHDOG_USEC"), 10, 64); err == nil && us > 0 {
		w.watchdog = time.Duration(us) * time.Microsecond
	}
	get("WATCHDOG_PID")
	if n, err := strconv.Atoi(get(envMaxReqs)); err == nil && n > 0 {
		// Up to 10% jitter, so that workers started together don't all
		// recycle at once.
		w.maxReqs = n + rand.IntN(n/10+1)
	}

	w.ctx, w.cancel = context.WithCancelCause(context.Background())
	w.sigs = make(chan os.Signal, 1)
	signal.Notify(w.sigs, unix.SIGTERM, unix.SIGINT)

	fail := func(err error) (*Worker, error) { w.Close(); return nil, err }
	if w.in, err = listener.FromEnv(); err != nil {
		return fail(err)
	}
	if w.notify, err = sdnotify.Dial(notifyAddr); err != nil {
		return fail(err)
	}
	if fd, err := takeFd(masterFd); err != nil {
		return fail(fmt.Errorf("%s: %w", envMasterFd, err))
	} else if fd >= 0 {
		// Through the poller, so that Close interrupts the read.
		unix.SetNonblock(fd, true)
		w.life = os.NewFile(uintptr(fd), "lifeline")
	}
	if fd, err := takeFd(metricsFd); err != nil {
		return fail(fmt.Errorf("%s: %w", envMetricsFd, err))
	} else if fd >= 0 {
		w.metrics = os.NewFile(uintptr(fd), "metrics")
	}
	if fd, err := takeFd(stateFd); err != nil {
		return fail(fmt.Errorf("%s: %w", envStateFd, err))
	} else if fd >= 0 {
		size, perr := strconv.ParseInt(stateSize, 10, 64)
		if perr != nil || size < 0 {
			unix.Close(fd)
			return fail(fmt.Errorf("%s=%q: not a size", envStateSize, stateSize))
		}
		if opts.MapState != nil {
			w.state, w.unmap, err = opts.MapState(fd, size)
		}
		// The mapping stays valid after the descriptor is closed.
		unix.Close(fd)
		if err != nil {
			return fail(fmt.Errorf("shared state: %w", err))
		}
	}
	w.wg.Add(1)
	go w.watch()
	return w, nil
}

// takeFd parses an inherited descriptor number and sets close-on-exec on
// it (ExtraFiles arrive with it cleared). -1 when v is empty.
func takeFd(v string) (int, error) {
	if v == "" {
		return -1, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return -1, fmt.Errorf("%q is not a descriptor", v)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return -1, fmt.Errorf("descriptor %d: %w", fd, err)
	}
	return fd, nil
}

// watch ends the context on SIGTERM/SIGINT or the master's death.
func (w *Worker) watch() {
	defer w.wg.Done()
	lifeEOF := make(chan struct{})
	if w.life != nil {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			var b [1]byte
			for {
				_, err := w.life.Read(b[:])
				if err == io.EOF {
					close(lifeEOF)
					return
				}
				if err != nil {
					return // closed by Close
				}
			}
		}()
	}
	select {
	case sig := <-w.sigs:
		w.log.Info("draining", "signal", sig.String())
		w.cancel(ErrTerminated)
	case <-lifeEOF:
		w.log.Warn("master is gone; draining")
		w.cancel(ErrMasterGone)
	case <-w.quit:
		w.cancel(ErrClosed)
	}
}

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

// Listener returns the inherited stream listener named name (a -listen
// name). The worker keeps ownership: Close closes it.
func (w *Worker) Listener(name string) (net.Listener, error) { return w.in.Listener(name) }

// PacketConn returns the inherited datagram socket named name.
func (w *Worker) PacketConn(name string) (net.PacketConn, error) { return w.in.PacketConn(name) }

// Names lists the inherited sockets' names.
func (w *Worker) Names() []string { return w.in.Names() }

// State is the shared read-only state region, or nil if there is none. A
// write to it faults. It stays mapped until Close: nothing that points
// into it may outlive the worker's Close.
func (w *Worker) State() []byte { return w.state }

// Registry is the worker's metrics registry (Options.Registry), or nil.
func (w *Worker) Registry() *prometheus.Registry { return w.opts.Registry }

// MetricsFile is the socket over which the master asks this worker for
// its metrics (PREFORK_METRICS_FD), or nil.
func (w *Worker) MetricsFile() *os.File { return w.metrics }

// Ready tells the master this worker serves, and starts the heartbeats
// when the master asked for them. Later calls do nothing.
func (w *Worker) Ready() error {
	var err error
	w.ready.Do(func() {
		err = w.notify.Send("READY=1")
		if w.watchdog > 0 {
			w.wg.Add(1)
			go w.heartbeat()
		}
	})
	return err
}

// MaxRequests is how many requests this worker should serve before it asks
// to be replaced (the master's -max-requests plus up to 10% jitter), or 0.
// Package server's HTTP helper counts them and calls Recycle.
func (w *Worker) MaxRequests() int { return w.maxReqs }

// Recycle asks the master to replace this worker gracefully: the master
// starts a replacement, and sends this worker SIGTERM once that one is
// ready. reason is counted in prefork_worker_restarts_total.
func (w *Worker) Recycle(reason string) error {
	return w.notify.Send(recycleVar + "=" + reason)
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

// Close tells the master the worker is stopping, stops the runtime's
// goroutines, closes the inherited sockets and unmaps the state. Safe to
// call twice.
func (w *Worker) Close() error {
	w.close.Do(func() {
		w.notify.Send("STOPPING=1")
		signal.Stop(w.sigs)
		close(w.quit)
		if w.life != nil {
			w.life.Close()
		}
		w.wg.Wait()
		if w.cancel != nil {
			w.cancel(ErrClosed)
		}
		if w.in != nil {
			w.in.Close()
		}
		if w.metrics != nil {
			w.metrics.Close()
		}
		w.notify.Close()
		if w.unmap != nil {
			w.unmap()
		}
	})
	return nil
}
