package server

import (
	"context"
	"errors"
	"github.com/preforkd/preforkd/internal/testutil"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// 1a. A request whose handler runs when the drain begins is answered, and
// Shutdown does not return before it was.
func TestHTTPDrainFinishesRequestInFlight(t *testing.T) {
	started := make(chan struct{})
	var startOnce sync.Once
	var mu sync.Mutex
	var handlerEnd time.Time
	h := &HTTP{IdleClose: 200 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		startOnce.Do(func() { close(started) })
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		handlerEnd = time.Now()
		mu.Unlock()
		io.WriteString(w, "ok")
	})}
	addr, served := startHTTP(t, h)
	c := dial(t, addr)
	c.send(t)
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was not called")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sd := shutdownHTTP(t, h, ctx)
	c.mustOK(t, "request in flight when the drain began")

	if err := sd.wait(t, 5*time.Second, "Shutdown"); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	mu.Lock()
	end := handlerEnd
	mu.Unlock()
	if !sd.start.Before(end) {
		t.Fatalf("setup: Shutdown began at %v, after the handler ended at %v", sd.start, end)
	}
	if sd.end.Before(end) {
		t.Errorf("Shutdown returned %v before the handler in flight finished", end.Sub(sd.end))
	}
	if err := served.wait(t, 5*time.Second, "Serve"); err != nil {
		t.Errorf("Serve = %v after Shutdown, want nil", err)
	}
}

// 1b. The next request on a keep-alive connection after the drain began is
// answered, with "Connection: close", and then the connection is closed.
func TestHTTPDrainAnswersKeepAliveWithConnectionClose(t *testing.T) {
	// IdleClose is far longer than the test: a close we see comes from
	// "Connection: close", not from the idle timer.
	h := &HTTP{IdleClose: 10 * time.Second, Handler: okHandler()}
	addr, served := startHTTP(t, h)
	c := dial(t, addr)
	c.send(t)
	if resp := c.mustOK(t, "request before the drain"); resp.Close {
		t.Fatalf("response before the drain has Connection: close, want keep-alive")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sd := shutdownHTTP(t, h, ctx)
	// Serve returns once the drain has closed the listener: from here on
	// every request is one read after the drain began.
	if err := served.wait(t, 5*time.Second, "Serve"); err != nil {
		t.Errorf("Serve = %v after Shutdown, want nil", err)
	}
	if !h.draining.Load() {
		t.Fatal("Serve returned, but the server is not draining")
	}

	c.send(t)
	resp := c.mustOK(t, "request on a keep-alive connection after the drain began")
	// http.ReadResponse turns "Connection: close" into resp.Close (and
	// drops the header); for HTTP/1.1 nothing else sets it.
	if !resp.Close {
		t.Errorf("response during the drain is keep-alive, want Connection: close")
	}
	sent := time.Now()
	closed, err := c.closedWithin(5 * time.Second)
	if err != nil {
		t.Fatalf("connection after the Connection: close response: %v", err)
	}
	if d := closed.Sub(sent); d > 2*time.Second {
		t.Errorf("connection closed %v after the Connection: close response, want at once", d)
	}
	if err := sd.wait(t, 5*time.Second, "Shutdown"); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

// 1c. A keep-alive connection that stays idle during the drain is closed
// only after IdleClose, and Shutdown returns nil once it is.
func TestHTTPDrainClosesIdleConnectionAfterIdleClose(t *testing.T) {
	const idle = 300 * time.Millisecond
	h := &HTTP{IdleClose: idle, Handler: okHandler()}
	addr, served := startHTTP(t, h)
	c := dial(t, addr)
	c.send(t)
	c.mustOK(t, "request before the drain")
	answered := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sd := shutdownHTTP(t, h, ctx)

	sleepUntil(sd.start.Add(100 * time.Millisecond))
	open, err := c.open()
	if err != nil {
		t.Fatal(err)
	}
	if !open {
		t.Fatalf("idle connection closed %v after the drain began, before IdleClose (%v)", time.Since(sd.start), idle)
	}
	if sd.returned() {
		t.Fatalf("Shutdown returned %v while a connection was still open", sd.err)
	}

	closed, err := c.closedWithin(time.Until(sd.start.Add(2 * time.Second)))
	if err != nil {
		t.Fatalf("idle connection during the drain: %v, want closed by 2s after the drain began", err)
	}
	if d := closed.Sub(answered); d < idle {
		t.Errorf("idle connection closed after %v idle, want at least IdleClose (%v)", d, idle)
	}
	if err := sd.wait(t, 5*time.Second, "Shutdown"); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if err := served.wait(t, 5*time.Second, "Serve"); err != nil {
		t.Errorf("Serve = %v after Shutdown, want nil", err)
	}
}

// 1d. A connection accepted before the drain that sends its first request
// after the drain began gets an answer, not EOF: the trap of the stock
// http.Server.Shutdown (a known trap;
// TestStockShutdownLosesRequestOnNewConnection shows it).
func TestHTTPDrainServesFirstRequestOnNewConnection(t *testing.T) {
	h := &HTTP{Handler: okHandler()} // IdleClose: the default, 1s
	addr, served := startHTTP(t, h)
	c := dial(t, addr)
	testutil.WaitFor(t, 5*time.Second, "the server to accept the connection", func() bool { return serverConns(h, http.StateNew) == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sd := shutdownHTTP(t, h, ctx)
	if err := served.wait(t, 5*time.Second, "Serve"); err != nil {
		t.Errorf("Serve = %v after Shutdown, want nil", err)
	}

	sleepUntil(sd.start.Add(100 * time.Millisecond))
	c.send(t)
	resp := c.mustOK(t, "first request on a connection accepted before the drain")
	if !resp.Close {
		t.Errorf("response during the drain is keep-alive, want Connection: close")
	}
	if _, err := c.closedWithin(5 * time.Second); err != nil {
		t.Errorf("connection after the Connection: close response: %v", err)
	}
	if err := sd.wait(t, 5*time.Second, "Shutdown"); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

// 1e. When Shutdown's context ends while a handler still runs, Shutdown
// returns the context's error and closes the connections.
func TestHTTPShutdownContextExpires(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	var startOnce sync.Once
	h := &HTTP{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		startOnce.Do(func() { close(started) })
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})}
	addr, served := startHTTP(t, h)
	t.Cleanup(func() { close(release) })
	c := dial(t, addr)
	c.send(t)
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was not called")
	}

	const grace = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	err := h.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want %v", err, context.DeadlineExceeded)
	}
	if d := time.Since(start); d < grace-50*time.Millisecond {
		t.Errorf("Shutdown returned after %v, before its context ended (%v)", d, grace)
	}
	if _, err := c.closedWithin(2 * time.Second); err != nil {
		t.Errorf("connection of the unfinished request: %v, want closed by Shutdown", err)
	}
	if err := served.wait(t, 5*time.Second, "Serve"); err != nil {
		t.Errorf("Serve = %v after Shutdown, want nil", err)
	}
}

// 1f. Serve returns nil after Shutdown when there is nothing to drain.
func TestHTTPServeReturnsNilAfterShutdown(t *testing.T) {
	h := &HTTP{Handler: okHandler()}
	addr, served := startHTTP(t, h)
	c := dial(t, addr)
	c.send(t)
	c.mustOK(t, "request before the drain")
	c.Close()
	testutil.WaitFor(t, 5*time.Second, "the server to see the close", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.conns) == 0
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if err := served.wait(t, 5*time.Second, "Serve"); err != nil {
		t.Errorf("Serve = %v after Shutdown, want nil", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("the listener still accepts after Shutdown")
	}
}

// IdleClose counts idle time during the drain (its doc: "how long a
// connection must have been idle during a drain"), so a keep-alive
// connection that was already idle for longer than IdleClose when the
// drain began must not be closed at once: a client sending on it right
// then is cut off (the second HTTP trap).
func TestHTTPDrainLongIdleConnectionIsNotClosedAtOnce(t *testing.T) {
	const idle = 300 * time.Millisecond
	for _, tc := range []struct {
		name   string
		prime  func(t *testing.T, c *client)
		before http.ConnState
	}{
		{"keep-alive", func(t *testing.T, c *client) { c.send(t); c.mustOK(t, "request before the drain") }, http.StateIdle},
		{"new", func(t *testing.T, c *client) {}, http.StateNew},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &HTTP{IdleClose: idle, Handler: okHandler()}
			addr, _ := startHTTP(t, h)
			c := dial(t, addr)
			tc.prime(t, c)
			testutil.WaitFor(t, 5*time.Second, "the connection's state", func() bool { return serverConns(h, tc.before) == 1 })
			time.Sleep(2 * idle) // idle for longer than IdleClose before the drain

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sd := shutdownHTTP(t, h, ctx)
			sleepUntil(sd.start.Add(100 * time.Millisecond))
			c.send(t)
			if resp, _, err := c.response(5 * time.Second); err != nil {
				t.Errorf("request sent 100ms into the drain on a connection idle for %v before it: %v", 2*idle, err)
			} else if resp.StatusCode != http.StatusOK {
				t.Errorf("status %d, want 200", resp.StatusCode)
			}
			if err := sd.wait(t, 5*time.Second, "Shutdown"); err != nil {
				t.Errorf("Shutdown = %v, want nil", err)
			}
		})
	}
}

// Serve's doc says it returns nil after Shutdown. When Shutdown runs before
// Serve has taken the listener (ServeHTTP/Run start Serve in a goroutine and
// may see the worker's context end at once), Serve must still stop.
func TestHTTPShutdownBeforeServe(t *testing.T) {
	h := &HTTP{Handler: okHandler()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := async(t, func() error { return h.Serve(ln) }, func() { h.srv.Close(); ln.Close() })
	select {
	case <-served.done:
		if served.err != nil {
			t.Errorf("Serve after Shutdown = %v, want nil", served.err)
		}
	case <-time.After(time.Second):
		t.Errorf("Serve after Shutdown still serving after 1s, want it to return nil")
	}
}

// The trap that HTTP exists for: with the stock
// http.Server.Shutdown, a connection accepted before the drain whose first
// request arrives after the drain began gets no answer at all.
func TestStockShutdownLosesRequestOnNewConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	states := map[net.Conn]http.ConnState{}
	srv := &http.Server{Handler: okHandler(), ConnState: func(c net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		states[c] = st
	}}
	served := async(t, func() error { return srv.Serve(ln) }, func() { srv.Close() })
	c := dial(t, ln.Addr().String())
	testutil.WaitFor(t, 5*time.Second, "the server to accept the connection", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(states) == 1
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sd := async(t, func() error { return srv.Shutdown(ctx) }, func() { srv.Close() })
	if err := served.wait(t, 5*time.Second, "Serve"); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve = %v, want %v", err, http.ErrServerClosed)
	}
	sleepUntil(sd.start.Add(100 * time.Millisecond))
	c.send(t)
	resp, _, err := c.response(5 * time.Second)
	if err == nil {
		t.Fatalf("the stock Shutdown answered %d: the trap no longer reproduces on this Go version", resp.StatusCode)
	}
	if !isClosed(err) {
		t.Errorf("stock Shutdown: %v, want EOF or connection reset", err)
	}
	if err := sd.wait(t, 5*time.Second, "Shutdown"); err != nil {
		t.Errorf("stock Shutdown = %v, want nil", err)
	}
}
