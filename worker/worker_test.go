//go:build linux

package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// contractEnv lists every variable of the master → worker contract that
// New must unset (the master → worker contract, internal/contract).
var contractEnv = []string{
	"PREFORK_WORKER", "PREFORK_GENERATION", "PREFORK_STATE_FD", "PREFORK_STATE_SIZE",
	"PREFORK_METRICS_FD", "PREFORK_MASTER_FD", "PREFORK_MASTER_PID", "PREFORK_GRACE",
	"PREFORK_MAX_REQUESTS", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID",
	"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
}

// clearContractEnv empties the contract's variables for the test (and
// restores them after it), so that New sees only what the test sets.
func clearContractEnv(t *testing.T) {
	for _, k := range contractEnv {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// notifyReceiver is the master's side of NOTIFY_SOCKET: a unixgram socket
// in t.TempDir whose datagrams arrive on msgs.
type notifyReceiver struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T) *notifyReceiver {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	rc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	// Buffered so that a heartbeat burst never blocks the reader while
	// the test looks elsewhere; the test drains what it needs.
	r := &notifyReceiver{path: path, msgs: make(chan string, 256)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, _, err := rc.ReadFromUnix(buf)
			if err != nil {
				return
			}
			select {
			case r.msgs <- string(buf[:n]):
			default: // the test stopped listening
			}
		}
	}()
	t.Cleanup(func() { rc.Close(); <-done })
	return r
}

// next returns the next message, and fails the test after timeout.
func (r *notifyReceiver) next(t *testing.T, timeout time.Duration, want string) string {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(timeout):
		t.Fatalf("no notification within %v, waiting for %q", timeout, want)
		return ""
	}
}

// await skips other messages until want arrives, and fails the test after
// timeout. It returns the messages it skipped.
func (r *notifyReceiver) await(t *testing.T, timeout time.Duration, want string) []string {
	t.Helper()
	deadline := time.After(timeout)
	var skipped []string
	for {
		select {
		case m := <-r.msgs:
			if m == want {
				return skipped
			}
			skipped = append(skipped, m)
		case <-deadline:
			t.Fatalf("no %q within %v (got %q)", want, timeout, skipped)
			return nil
		}
	}
}

func TestNewWithoutWorkerEnvironment(t *testing.T) {
	t.Setenv("PREFORK_WORKER", "")
	os.Unsetenv("PREFORK_WORKER")
	if IsWorker() {
		t.Errorf("IsWorker() = true without PREFORK_WORKER")
	}
	w, err := New(Options{})
	if !errors.Is(err, ErrNotWorker) {
		t.Errorf("New() error = %v, want %v", err, ErrNotWorker)
	}
	if w != nil {
		t.Errorf("New() returned a Worker with its error")
		w.Close()
	}
}

// In-process: no inherited descriptors, only the notify socket, which is
// all that Recycle, Status and Close's STOPPING=1 need.
func TestRecycleStatusAndStopping(t *testing.T) {
	clearContractEnv(t)
	r := listenNotify(t)
	t.Setenv("PREFORK_WORKER", "3")
	t.Setenv("NOTIFY_SOCKET", r.path)
	w, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Slot() != 3 {
		t.Errorf("Slot() = %d, want 3", w.Slot())
	}
	for _, k := range []string{"PREFORK_WORKER", "NOTIFY_SOCKET"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q still set after New", k, v)
		}
	}

	if err := w.Recycle("max-requests"); err != nil {
		t.Fatalf("Recycle: %v", err)
	}
	if got, want := r.next(t, 5*time.Second, "the recycle request"), "X_PREFORKD_RECYCLE=max-requests"; got != want {
		t.Errorf("Recycle sent %q, want %q", got, want)
	}
	if err := w.Status("warm"); err != nil {
		t.Fatalf("Status: %v", err)
	}
	if got, want := r.next(t, 5*time.Second, "the status"), "STATUS=warm"; got != want {
		t.Errorf("Status sent %q, want %q", got, want)
	}
	if err := w.Context().Err(); err != nil {
		t.Errorf("context ended (%v) before Close", err)
	}

	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got, want := r.next(t, 5*time.Second, "STOPPING=1"), "STOPPING=1"; got != want {
		t.Errorf("Close sent %q, want %q", got, want)
	}
	if err := context.Cause(w.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("cause after Close = %v, want %v", err, ErrClosed)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case m := <-r.msgs:
		t.Errorf("second Close sent %q", m)
	case <-time.After(100 * time.Millisecond):
	}
}

// The child side of TestWorkerProcess, run in a re-executed test binary
// with the contract's environment and descriptors; a plain test run skips
// it. It reports through its exit status (t.Error) and stdout.
func TestHelperWorker(t *testing.T) {
	if os.Getenv("WORKER_HELPER") != "1" {
		return // only the child of TestWorkerProcess runs this
	}
	w, err := New(Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer w.Close()

	if got := w.Slot(); got != 2 {
		t.Errorf("Slot() = %d, want 2", got)
	}
	if got := w.Generation(); got != 7 {
		t.Errorf("Generation() = %d, want 7", got)
	}
	if got := w.Grace(); got != 5*time.Second {
		t.Errorf("Grace() = %v, want 5s", got)
	}
	if got := w.MaxRequests(); got < 100 || got > 110 {
		t.Errorf("MaxRequests() = %d, want 100…110", got)
	}
	if got := w.Names(); len(got) != 1 || got[0] != "http" {
		t.Errorf("Names() = %q, want [http]", got)
	}
	for _, k := range contractEnv {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q still set after New: the worker's children would inherit it", k, v)
		}
	}
	if flags, err := unix.FcntlInt(4, unix.F_GETFD, 0); err != nil {
		t.Errorf("fcntl(4, F_GETFD): %v", err)
	} else if flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("the lifeline (fd 4) has close-on-exec cleared: it would leak into the worker's children")
	}

	// Prove the inherited listener works: greet one connection.
	ln, err := w.Listener("http")
	if err != nil {
		t.Fatalf("Listener(http): %v", err)
	}
	greeted := make(chan struct{})
	go func() {
		defer close(greeted)
		c, err := ln.Accept()
		if err != nil {
			return // closed by w.Close
		}
		fmt.Fprintf(c, "slot %d\n", w.Slot())
		c.Close()
	}()

	if err := w.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
	select {
	case <-w.Context().Done():
	case <-time.After(time.Minute):
		t.Fatal("the worker's context did not end")
	}
	fmt.Printf("CAUSE=%v\n", context.Cause(w.Context()))
	w.Close()
	<-greeted
	if err := context.Cause(w.Context()); err == nil || errors.Is(err, ErrClosed) {
		t.Errorf("cause after Close = %v, want the first cause kept", err)
	}
}
