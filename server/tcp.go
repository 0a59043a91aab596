package server

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/preforkd/preforkd/worker"
)

// TCP serves a handler per connection. The zero value is not usable: set
// Handler.
type TCP struct {
	// Handler serves one connection; it should return when ctx ends
	// (the drain began). The connection is closed after it returns. When
	// the drain begins, every connection's read deadline is set to now, so
	// that a handler blocked in Read returns (with os.ErrDeadlineExceeded)
	// instead of holding the drain for the whole grace period.
	Handler func(ctx context.Context, c net.Conn)

	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	closed bool
}

func (t *TCP) init() {
	t.once.Do(func() {
		t.ctx, t.cancel = context.WithCancel(context.Background())
		t.conns = map[net.Conn]struct{}{}
	})
}

// Serve accepts on ln until Shutdown (then it returns nil) or an accept
// error.
func (t *TCP) Serve(ln net.Listener) error {
	t.init()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.ln = ln
	t.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			t.mu.Lock()
			closed := t.closed
			t.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTemporary(err)) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		t.mu.Lock()
		if t.closed {
			// Accepted as Shutdown began: Shutdown no longer waits for new
			// handlers, so this connection gets none.
			t.mu.Unlock()
			c.Close()
			return nil
		}
		t.conns[c] = struct{}{}
		t.wg.Add(1) // under mu, before closed is set: Shutdown's Wait sees it
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			t.Handler(t.ctx, c)
			c.Close()
			t.mu.Lock()
			delete(t.conns, c)
			t.mu.Unlock()
		}()
	}
}

// errTemporary treats EMFILE-like accept errors as worth retrying.
func errTemporary(err error) error {
	type temporary interface{ Temporary() bool }
	if te, ok := err.(temporary); ok && te.Temporary() {
		return err
	}
	return nil
}

// Shutdown stops accepting, cancels the handlers' context and waits for
// them. When ctx ends first it closes every connection, waits for the
// handlers to return, and returns ctx's error.
func (t *TCP) Shutdown(ctx context.Context) error {
	t.init()
	t.mu.Lock()
	t.closed = true
	ln := t.ln
	t.mu.Unlock()
	t.cancel()
	if ln != nil {
		ln.Close()
	}
	t.mu.Lock()
	for c := range t.conns {
		c.SetReadDeadline(time.Now()) // unblock handlers stuck in a read
	}
	t.mu.Unlock()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		for c := range t.conns {
			c.Close()
		}
		t.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// Run serves on the worker's listener named name: Serve, Ready, and a drain
// within the worker's grace when its context ends (see Serve).
func (t *TCP) Run(w *worker.Worker, name string) error { return Serve(w, name, t) }
