package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/preforkd/preforkd/internal/testutil"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/preforkd/preforkd/listener"
	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/worker"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// localWorker is a worker in this process on a fresh loopback listener
// named "main".
func localWorker(t *testing.T, grace time.Duration) (*worker.Worker, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := worker.NewLocal(worker.Options{Logger: quiet}, worker.Local{Listeners: map[string]net.Listener{"main": ln}, Grace: grace})
	t.Cleanup(func() { w.Close() })
	return w, ln.Addr().String()
}

// fakeGRPC stands in for a *grpc.Server: it serves HTTP, and records how
// it was stopped.
type fakeGRPC struct {
	srv      *http.Server
	graceful chan struct{}
	hard     chan struct{}
	block    bool // GracefulStop waits for Stop (an RPC that never ends)
}

func (f *fakeGRPC) Serve(ln net.Listener) error { return f.srv.Serve(ln) }
func (f *fakeGRPC) GracefulStop() {
	close(f.graceful)
	if f.block {
		<-f.hard
	}
	f.srv.Close()
}
func (f *fakeGRPC) Stop() { close(f.hard) }

func TestServeAnyServerReadyThenDrain(t *testing.T) {
	w, addr := localWorker(t, 300*time.Millisecond)
	g := &fakeGRPC{srv: &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { fmt.Fprint(rw, "hi") })},
		graceful: make(chan struct{}), hard: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- Serve(w, "main", GRPC(g)) }()
	testutil.WaitFor(t, 5*time.Second, "ready", w.IsReady)
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hi" {
		t.Errorf("answer %q", b)
	}
	w.Close() // the worker's context ends: the drain begins
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v, want nil after a clean drain", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
	select {
	case <-g.graceful:
	default:
		t.Error("GracefulStop was not called")
	}
}

func TestGRPCStopsHardAtTheDeadline(t *testing.T) {
	g := &fakeGRPC{srv: &http.Server{}, graceful: make(chan struct{}), hard: make(chan struct{}), block: true}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := GRPC(g).Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the deadline", err)
	}
	select {
	case <-g.hard:
	default:
		t.Error("Stop was not called at the deadline")
	}
}

func TestServeStoppedServerIsAnError(t *testing.T) {
	w, _ := localWorker(t, time.Second)
	ln, _ := w.Listener("main")
	srv := &http.Server{}
	go func() { time.Sleep(50 * time.Millisecond); ln.Close() }()
	err := Serve(w, "main", srv)
	if err == nil || !strings.Contains(err.Error(), "stopped before the drain") {
		t.Errorf("Serve: %v, want an error saying serving stopped", err)
	}
}

// A TCP handler blocked in a read does not hold the drain: the read
// returns once Shutdown begins.
func TestTCPDrainUnblocksReads(t *testing.T) {
	w, addr := localWorker(t, 10*time.Second)
	reading := make(chan struct{})
	srv := &TCP{Handler: func(ctx context.Context, c net.Conn) {
		close(reading)
		bufio.NewReader(c).ReadString('\n') // blocks: the client never sends
	}}
	done := make(chan error, 1)
	go func() { done <- srv.Run(w, "main") }()
	testutil.WaitFor(t, 5*time.Second, "ready", w.IsReady)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-reading
	t0 := time.Now()
	w.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the drain waited for a handler blocked in a read")
	}
	t.Logf("drain took %v with a handler blocked in Read (grace 10s)", time.Since(t0).Round(time.Millisecond))
}

// HTTP.Run leaves the caller's HTTP and http.Server as they were.
func TestHTTPRunDoesNotModifyCaller(t *testing.T) {
	w, addr := localWorker(t, time.Second)
	handler := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { fmt.Fprint(rw, "ok") })
	base := &http.Server{ReadHeaderTimeout: 7 * time.Second}
	h := &HTTP{Handler: handler, Server: base}
	done := make(chan error, 1)
	go func() { done <- h.Run(w, "main") }()
	testutil.WaitFor(t, 5*time.Second, "ready", w.IsReady)
	if resp, err := http.Get("http://" + addr + "/"); err == nil {
		resp.Body.Close()
	}
	w.Close()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if base.Handler != nil || base.ConnState != nil || base.ReadHeaderTimeout != 7*time.Second {
		t.Errorf("the caller's http.Server was modified: %+v", base)
	}
	if fmt.Sprintf("%p", h.Handler) != fmt.Sprintf("%p", handler) {
		t.Errorf("the caller's Handler was replaced")
	}
}

// An app that returns before Ready gets an error that says what to do.
func TestAppReturnsBeforeReady(t *testing.T) {
	for _, appErr := range []error{nil, errors.New("db: connection refused")} {
		w, _ := localWorker(t, time.Second)
		err := runApp(w, func(ctx context.Context, w *worker.Worker) error { return appErr })
		if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "call w.Ready()") {
			t.Errorf("app returning %v: %v, want ErrNotReady", appErr, err)
		}
		if appErr != nil && !errors.Is(err, appErr) {
			t.Errorf("the app's own error is lost: %v", err)
		}
	}
}

// The development mode runs the app in-process on the configured
// listeners, with the state, and returns nil after the drain.
func TestRunInProcess(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	cfg := master.Config{
		Listen: []listener.Spec{{Name: "http", Network: "tcp", Address: addr}},
		Logger: quiet,
		LoadState: func() (master.Region, error) {
			return stateFromBytes(t, []byte("shared bytes"))
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- RunInProcess(ctx, cfg, worker.Options{}, func(ctx context.Context, w *worker.Worker) error {
			return ServeHTTP(w, "http", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(rw, "slot=%d state=%s", w.Slot(), w.State())
			}))
		})
	}()
	var body string
	testutil.WaitFor(t, 5*time.Second, "the in-process app to answer", func() bool {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return true
	})
	if body != "slot=0 state=shared bytes" {
		t.Errorf("answer %q", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunInProcess: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunInProcess did not return after ctx ended")
	}
}

// rawGRPC behaves as a *grpc.Server does with a connection: its accept
// loop hands each connection to a goroutine that, once scheduled, closes
// it unread if GracefulStop has begun, and else serves it (here: one line
// in, "ok" out). GracefulStop closes its listeners and waits for the
// connections.
type rawGRPC struct {
	lateStart time.Duration // how long a new connection's goroutine takes to run
	accepted  chan struct{}
	quit      atomic.Bool
	mu        sync.Mutex
	lns       []net.Listener
	wg        sync.WaitGroup
}

func (r *rawGRPC) Serve(ln net.Listener) error {
	r.mu.Lock()
	r.lns = append(r.lns, ln)
	r.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			if r.quit.Load() {
				return nil
			}
			return err
		}
		r.accepted <- struct{}{}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			time.Sleep(r.lateStart)
			if r.quit.Load() {
				c.Close()
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
				io.WriteString(c, "ok\n")
			}
			c.Close()
		}()
	}
}

func (r *rawGRPC) GracefulStop() {
	r.quit.Store(true)
	r.mu.Lock()
	for _, ln := range r.lns {
		ln.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *rawGRPC) Stop() { r.GracefulStop() }

// A connection accepted just before the drain reaches the gRPC server's
// handshake instead of being closed unread (the client saw "connection
// reset by peer" reading the server preface, and failed calls until it
// reconnected).
func TestGRPCServesConnectionAcceptedAtTheDrain(t *testing.T) {
	w, addr := localWorker(t, 5*time.Second)
	r := &rawGRPC{lateStart: 200 * time.Millisecond, accepted: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() { done <- Serve(w, "main", GRPC(r)) }()
	testutil.WaitFor(t, 5*time.Second, "ready", w.IsReady)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "hello\n")
	select {
	case <-r.accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("not accepted")
	}
	w.Close() // the drain begins while the connection waits for its goroutine
	line, err := bufio.NewReader(c).ReadString('\n')
	if line != "ok\n" {
		t.Errorf("the connection accepted at the drain got %q, %v; want ok", line, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v, want nil after a clean drain", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
}
