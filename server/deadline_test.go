package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// stuckHandler sleeps past any short deadline; its name must appear in the
// logged stack.
func stuckHandler(w http.ResponseWriter, r *http.Request) {
	time.Sleep(1500 * time.Millisecond)
	if _, err := io.WriteString(w, "too late\n"); err != http.ErrHandlerTimeout {
		panic("a write after the 503 was not refused")
	}
}

func TestRequestDeadline(t *testing.T) {
	var logs testutil.SyncBuffer
	reg := prometheus.NewRegistry()
	var recycled atomic.Value
	d := newDeadlines(200*time.Millisecond, 1, reg, func(r string) { recycled.Store(r) }, slog.New(slog.NewTextHandler(&logs, nil)))
	stop := make(chan struct{})
	defer close(stop)
	go d.run(stop)
	mux := http.NewServeMux()
	mux.HandleFunc("/stuck", stuckHandler)
	mux.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	srv := httptest.NewServer(d.wrap(mux))
	defer srv.Close()

	began := time.Now()
	resp, err := srv.Client().Get(srv.URL + "/stuck")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	if resp.StatusCode != 503 || string(body) != "request timed out\n" || took > time.Second {
		t.Errorf("stuck request: %d %q after %v; want 503 within a second", resp.StatusCode, body, took)
	}
	if resp, err := srv.Client().Get(srv.URL + "/fast"); err != nil || resp.StatusCode != 200 {
		t.Errorf("a fast request: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	defer srv.Client().CloseIdleConnections()
	testutil.WaitFor(t, 5*time.Second, "the logged stack", func() bool { return strings.Contains(logs.String(), "request timed out") })
	log := logs.String()
	for _, want := range []string{"method=GET", "path=/stuck", "elapsed=", "answered_503=true", "server.stuckHandler"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	if n := promtest.ToFloat64(d.count); n != 1 {
		t.Errorf("http_request_timeouts_total = %v, want 1", n)
	}
	if recycled.Load() != nil {
		t.Errorf("one stuck request (limit 1) asked for a recycle: %v", recycled.Load())
	}
}

// Two requests stuck past the deadline with a limit of 1: the worker asks
// to be recycled, once.
func TestRequestDeadlineRecycles(t *testing.T) {
	var calls atomic.Int32
	d := newDeadlines(100*time.Millisecond, 1, nil, func(string) { calls.Add(1) }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	stop := make(chan struct{})
	defer close(stop)
	go d.run(stop)
	srv := httptest.NewServer(d.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { time.Sleep(time.Second) })))
	defer srv.Close()
	done := make(chan struct{}, 3)
	for i := 0; i < 3; i++ {
		go func() {
			if resp, err := srv.Client().Get(srv.URL); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			done <- struct{}{}
		}()
	}
	for i := 0; i < 3; i++ {
		<-done
	}
	testutil.WaitFor(t, 5*time.Second, "the recycle request", func() bool { return calls.Load() > 0 })
	time.Sleep(300 * time.Millisecond) // more checks while they are still stuck
	if n := calls.Load(); n != 1 {
		t.Errorf("recycle asked %d times, want once", n)
	}
}
