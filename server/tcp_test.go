package server

import (
	"context"
	"errors"
	"github.com/preforkd/preforkd/internal/testutil"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// checkServeNil checks that Serve returned nil after Shutdown (it once
// returned the listener's "use of closed network connection").
func checkServeNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("Serve = %v after Shutdown, want nil", err)
	}
}

// startTCP serves tc on a fresh loopback listener and returns once Serve has
// taken the listener.
func startTCP(t *testing.T, tc *TCP) (string, *result) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := async(t, func() error { return tc.Serve(ln) }, func() {
		// Stop everything even when the test failed before its Shutdown.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		tc.Shutdown(ctx)
		ln.Close()
	})
	testutil.WaitFor(t, 5*time.Second, "Serve to take the listener", func() bool {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		return tc.ln != nil
	})
	return ln.Addr().String(), served
}

// handlerLog records what a TCP handler saw, for the test goroutine.
type handlerLog struct {
	mu       sync.Mutex
	started  chan struct{} // closed when the first handler starts
	once     sync.Once
	errStart error     // ctx.Err() when the handler started
	errEnd   error     // ctx.Err() when the handler returned
	end      time.Time // when the handler returned
}

func newHandlerLog() *handlerLog { return &handlerLog{started: make(chan struct{})} }

func (l *handlerLog) start(ctx context.Context) {
	l.mu.Lock()
	l.errStart = ctx.Err()
	l.mu.Unlock()
	l.once.Do(func() { close(l.started) })
}

func (l *handlerLog) finish(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errEnd = ctx.Err()
	l.end = time.Now()
}

func (l *handlerLog) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-l.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was not called")
	}
}

// The handlers' context ends when the drain begins, Shutdown waits for the
// handlers, the connection is closed after its handler returns, and Serve
// returns nil.
func TestTCPShutdownCancelsHandlersAndWaits(t *testing.T) {
	const linger = 200 * time.Millisecond // the handler's own drain
	log := newHandlerLog()
	tc := &TCP{Handler: func(ctx context.Context, c net.Conn) {
		log.start(ctx)
		<-ctx.Done()
		time.Sleep(linger)
		io.WriteString(c, "bye\n")
		log.finish(ctx)
	}}
	addr, served := startTCP(t, tc)
	c := dial(t, addr)
	log.waitStarted(t)
	time.Sleep(50 * time.Millisecond)
	select {
	case <-tc.ctx.Done():
		t.Fatal("the handlers' context ended before Shutdown")
	default:
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := tc.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	returned := time.Now()

	log.mu.Lock()
	errStart, errEnd, end := log.errStart, log.errEnd, log.end
	log.mu.Unlock()
	if errStart != nil {
		t.Errorf("the handler's context had ended (%v) when the handler started", errStart)
	}
	if end.IsZero() || returned.Before(end) {
		t.Fatalf("Shutdown returned before the handler did")
	}
	if !errors.Is(errEnd, context.Canceled) {
		t.Errorf("the handler's context after Shutdown: %v, want %v", errEnd, context.Canceled)
	}
	if d := returned.Sub(start); d < linger {
		t.Errorf("Shutdown returned after %v, before the handler's %v drain", d, linger)
	}

	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("read after Shutdown: %v", err)
	}
	if string(got) != "bye\n" {
		t.Errorf("client read %q, want %q then EOF", got, "bye\n")
	}
	checkServeNil(t, served.wait(t, 5*time.Second, "Serve"))
}

// When Shutdown's context ends before a handler that ignores its context
// (and the read deadline the drain sets) returns, Shutdown closes the
// connections, waits for the handler (which returns because its connection
// is closed) and returns the context's error.
func TestTCPShutdownContextExpiresClosesConnections(t *testing.T) {
	log := newHandlerLog()
	tc := &TCP{Handler: func(ctx context.Context, c net.Conn) {
		log.start(ctx)
		buf := make([]byte, 512)
		for { // ignores ctx and deadlines; returns when c is closed
			_, err := c.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.SetReadDeadline(time.Time{})
				continue
			}
			if err != nil {
				break
			}
		}
		log.finish(ctx)
	}}
	addr, served := startTCP(t, tc)
	c := dial(t, addr)
	log.waitStarted(t)

	const grace = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	err := tc.Shutdown(ctx)
	returned := time.Now()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want %v", err, context.DeadlineExceeded)
	}
	if d := returned.Sub(start); d < grace-50*time.Millisecond {
		t.Errorf("Shutdown returned after %v, before its context ended (%v)", d, grace)
	}
	log.mu.Lock()
	end := log.end
	log.mu.Unlock()
	if end.IsZero() || returned.Before(end) {
		t.Errorf("Shutdown returned before the handler did")
	}
	if _, err := c.closedWithin(2 * time.Second); err != nil {
		t.Errorf("client connection after Shutdown's context ended: %v, want closed", err)
	}
	checkServeNil(t, served.wait(t, 5*time.Second, "Serve"))
}

// Serve returns nil after Shutdown, and a Serve that starts after Shutdown
// returns nil at once instead of serving.
func TestTCPServeReturnsNilAfterShutdown(t *testing.T) {
	tc := &TCP{Handler: func(ctx context.Context, c net.Conn) {}}
	addr, served := startTCP(t, tc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tc.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	checkServeNil(t, served.wait(t, 5*time.Second, "Serve"))
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("the listener still accepts after Shutdown")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	again := async(t, func() error { return tc.Serve(ln) }, func() { ln.Close() })
	if err := again.wait(t, time.Second, "Serve after Shutdown"); err != nil {
		t.Errorf("Serve after Shutdown = %v, want nil", err)
	}
}

// slowAccept hands out each accepted connection only once Close was
// called, and a little later: it stands for the scheduler running the
// Shutdown goroutine between accept(2) returning a connection and Serve
// registering it.
type slowAccept struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *slowAccept) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	<-l.closed
	time.Sleep(100 * time.Millisecond)
	return c, nil
}

func (l *slowAccept) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// A connection that Serve accepted just before the drain is either served
// by a handler that Shutdown waits for, or closed: never handed to a
// handler after Shutdown returned nil.
func TestTCPShutdownWaitsForConnectionAcceptedDuringIt(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &slowAccept{Listener: inner, closed: make(chan struct{})}
	var mu sync.Mutex
	var started []time.Time
	tc := &TCP{Handler: func(ctx context.Context, c net.Conn) {
		mu.Lock()
		started = append(started, time.Now())
		mu.Unlock()
		<-ctx.Done()
	}}
	served := async(t, func() error { return tc.Serve(ln) }, func() { tc.Shutdown(context.Background()); ln.Close() })
	testutil.WaitFor(t, 5*time.Second, "Serve to take the listener", func() bool {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		return tc.ln != nil
	})
	c := dial(t, inner.Addr().String())
	time.Sleep(50 * time.Millisecond) // accept(2) has returned it: Serve is in slowAccept

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tc.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	returned := time.Now()
	served.wait(t, 5*time.Second, "Serve")
	if _, err := c.closedWithin(2 * time.Second); err != nil {
		t.Errorf("connection accepted during the drain: %v, want closed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range started {
		if s.After(returned) {
			t.Errorf("a handler started %v after Shutdown returned nil", s.Sub(returned))
		}
	}
}
