package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/preforkd/preforkd/internal/testutil"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"
)

// The drain tests talk HTTP/1.1 over raw connections, so that the test, not
// a client library's retry logic, decides what is sent on which connection
// and when.

const request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
}

// startHTTP serves h on a fresh loopback listener. It returns once Serve
// has taken the listener, so that a Shutdown that follows is guaranteed to
// close it (TestHTTPShutdownBeforeServe shows why that matters).
func startHTTP(t *testing.T, h *HTTP) (string, *result) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := async(t, func() error { return h.Serve(ln) }, func() {
		// Whatever the test did or failed to do, stop serving and close
		// every connection, so that one failure leaks nothing into the
		// next test.
		h.srv.Close()
		ln.Close()
	})
	testutil.WaitFor(t, 5*time.Second, "Serve to take the listener", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.ln != nil
	})
	return ln.Addr().String(), served
}

// shutdownHTTP starts h.Shutdown(ctx) in a goroutine.
func shutdownHTTP(t *testing.T, h *HTTP, ctx context.Context) *result {
	return async(t, func() error { return h.Shutdown(ctx) }, func() { h.srv.Close() })
}

// serverConns counts the connections h tracks in state st.
func serverConns(h *HTTP, st http.ConnState) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for c := range h.conns {
		if http.ConnState(c.state.Load()) == st {
			n++
		}
	}
	return n
}

// client is one raw HTTP/1.1 client connection.
type client struct {
	net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{Conn: c, br: bufio.NewReader(c)}
}

// send writes one GET request.
func (c *client) send(t *testing.T) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatalf("send request: %v", err)
	}
}

// response reads one response and its body.
func (c *client) response(timeout time.Duration) (*http.Response, string, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// mustOK reads one response and fails the test unless it is 200 "ok".
func (c *client) mustOK(t *testing.T, what string) *http.Response {
	t.Helper()
	resp, body, err := c.response(5 * time.Second)
	if err != nil {
		t.Fatalf("%s: no response: %v", what, err)
	}
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("%s: got %d %q, want 200 \"ok\"", what, resp.StatusCode, body)
	}
	return resp
}

// closedWithin waits until the peer closes the connection and returns when
// the client saw it; an error when data arrives or timeout passes first.
func (c *client) closedWithin(timeout time.Duration) (time.Time, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	b, err := c.br.ReadByte()
	switch {
	case err == nil:
		return time.Time{}, fmt.Errorf("read %q, want the connection closed", b)
	case isClosed(err):
		return time.Now(), nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return time.Time{}, fmt.Errorf("still open after %v", timeout)
	default:
		return time.Time{}, err
	}
}

// open reports whether the connection is still open: a short read times out
// instead of seeing the peer's close.
func (c *client) open() (bool, error) {
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	b, err := c.br.ReadByte()
	switch {
	case err == nil:
		return false, fmt.Errorf("unexpected byte %q", b)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return true, nil
	case isClosed(err):
		return false, nil
	default:
		return false, err
	}
}

// isClosed reports whether err is how a client sees a connection the
// server closed.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// sleepUntil sleeps until t.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
