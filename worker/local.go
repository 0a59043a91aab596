package worker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"
)

// Local describes a worker that runs in the calling process, on sockets
// the caller opened: package server's development mode off Linux, and a
// way to run an app in a test.
type Local struct {
	// Listeners are the stream listeners by name; the worker takes
	// ownership (Close closes them).
	Listeners map[string]net.Listener
	// State is the shared state the app sees (read-only by convention:
	// nothing enforces it here).
	State []byte
	// Grace is the drain time. Defaults to 30s.
	Grace time.Duration
}

// NewLocal returns a Worker of slot 0, generation 1, with no master: Ready
// and Recycle reach no one, and the context ends on SIGTERM or SIGINT (or
// at Close). Call Close when done.
func NewLocal(opts Options, l Local) *Worker {
	w := newWorker(opts)
	w.gen = 1
	w.grace = l.Grace
	if w.grace <= 0 {
		w.grace = 30 * time.Second
	}
	w.state = l.State
	w.socks = localSockets(l.Listeners)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	w.stop = func() { signal.Stop(sigs) }
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		select {
		case sig := <-sigs:
			w.log.Info("draining", "signal", sig.String())
			w.cancel(ErrTerminated)
		case <-w.quit:
			w.cancel(ErrClosed)
		}
	}()
	return w
}

type localSockets map[string]net.Listener

func (s localSockets) Listener(name string) (net.Listener, error) {
	if l, ok := s[name]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("worker: no listener named %q (have %v)", name, s.Names())
}

func (s localSockets) PacketConn(name string) (net.PacketConn, error) {
	return nil, fmt.Errorf("worker: no datagram socket named %q in a local worker", name)
}

func (s localSockets) Names() []string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (s localSockets) Close() error {
	var errs []error
	for _, l := range s {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
