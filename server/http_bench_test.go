package server

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkHTTPPerRequest is what HTTP adds to one keep-alive request
// outside a drain: the two connection-state changes net/http reports
// (active, then idle) and the handler wrapper. It should be a few
// nanoseconds and allocate nothing.
func BenchmarkHTTPPerRequest(b *testing.B) {
	benchPerRequest(b, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
}

// benchPerRequest runs keep-alive requests through HTTP serving handler.
func benchPerRequest(b *testing.B, handler http.Handler) {
	h := &HTTP{Handler: handler}
	h.init()
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	tc := &trackedConn{Conn: c1}
	h.connState(tc, http.StateNew)
	req := httptest.NewRequest("GET", "/", nil)
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.connState(tc, http.StateActive)
		h.srv.Handler.ServeHTTP(w, req)
		h.connState(tc, http.StateIdle)
	}
}

// BenchmarkHTTPPerRequestDeadline is BenchmarkHTTPPerRequest with a
// request timeout (-request-timeout): a pooled record linked into the
// watchdog's list, a goroutine label set and reset, a writer wrapper. It
// should allocate nothing either (a request that finishes in time costs no
// goroutine and no timer).
func BenchmarkHTTPPerRequestDeadline(b *testing.B) {
	d := newDeadlines(time.Minute, 3, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	benchPerRequest(b, d.wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })))
}
