//go:build linux

package balance

import (
	"net"
	"testing"
	"time"
)

// twoWorkers is a board with two workers on one loopback listening
// socket, each with its own descriptor of it (as two worker processes
// have).
func twoWorkers(t *testing.T, mode Mode, p Policy) (a, b net.Listener, addr string) {
	t.Helper()
	board, err := Create(mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { board.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	wa, wb := board.Join(1001, p), board.Join(1002, p)
	a, b = wa.Listener(ln), wb.Listener(ln2)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b, ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// acceptAsync accepts once on ln in a goroutine.
func acceptAsync(ln net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

// notAccepted fails the test if the pending accept ch returns within
// 300 ms.
func notAccepted(t *testing.T, ch <-chan net.Conn, msg string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatal(msg)
	case <-time.After(300 * time.Millisecond):
	}
}

// accepted waits up to 5 s for the pending accept ch, and closes what it
// accepted.
func accepted(t *testing.T, ch <-chan net.Conn, msg string) {
	t.Helper()
	select {
	case c := <-ch:
		if c == nil {
			t.Fatal("accept failed")
		}
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal(msg)
	}
}

// mustAccept accepts on ln within 5 s, or fails the test.
func mustAccept(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	select {
	case c := <-acceptAsync(ln):
		if c == nil {
			t.Fatal("accept failed")
		}
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("nothing accepted in 5s")
	}
	return nil
}

// A worker holding more than its share of open connections leaves the
// next connection to the other worker, even when it is the one waiting in
// accept; once the other has taken its share, it accepts again.
func TestWorkerOverItsShareStopsAccepting(t *testing.T) {
	a, b, addr := twoWorkers(t, Conns, Policy{MaxWait: 5 * time.Second})
	for range MinOpen { // a takes 4 connections while b is not accepting
		dial(t, addr)
		defer mustAccept(t, a).Close()
	}
	fromA := acceptAsync(a) // a is over its share (4 open > 2 + 1): it waits
	time.Sleep(50 * time.Millisecond)
	dial(t, addr)
	notAccepted(t, fromA, "the worker over its share accepted while the other had none")
	defer mustAccept(t, b).Close() // b gets it
	dial(t, addr)                  // a still over (4 > 2.5 + 1): b again
	defer mustAccept(t, b).Close()
	// With b holding 2 of 6, a is within its share (4 ≤ 3 + 1): its
	// waiting accept takes the next connection.
	dial(t, addr)
	accepted(t, fromA, "a did not accept again once back within its share")
}

// In Accepts mode, a worker that has accepted more than Slack beyond the
// average of the workers accepting now waits too, even with nothing open
// (fresh connections, one request each).
func TestAcceptsModeSpreadsFreshConnections(t *testing.T) {
	a, b, addr := twoWorkers(t, Accepts, Policy{MaxWait: 5 * time.Second, Recent: time.Minute})
	dial(t, addr)
	mustAccept(t, b).Close() // b has accepted 1
	for range 6 {            // a accepts and closes 6: at the 6th, 5 ≤ (1+5)/2 + 2
		dial(t, addr)
		mustAccept(t, a).Close()
	}
	fromA := acceptAsync(a) // 7th: 6 > (1+6)/2 + 2: over
	dial(t, addr)
	notAccepted(t, fromA, "a accepted while 5 connections ahead of b")
	mustAccept(t, b).Close()
	dial(t, addr)
	accepted(t, fromA, "a did not accept once b caught up")
}

// A worker over its share whose peer does not accept (stuck, or dying)
// waits at most MaxWait, then accepts: nothing stalls.
func TestOverShareWaitsAtMostMaxWait(t *testing.T) {
	a, _, addr := twoWorkers(t, Conns, Policy{MaxWait: 100 * time.Millisecond})
	for range MinOpen {
		dial(t, addr)
		defer mustAccept(t, a).Close()
	}
	dial(t, addr)
	t0 := time.Now()
	mustAccept(t, a).Close()
	if d := time.Since(t0); d < 90*time.Millisecond || d > 5*time.Second {
		t.Errorf("accept over share took %v, want about MaxWait (100ms)", d)
	}
}

// Closing a connection counts it out; closing the worker's listener takes
// it out of the others' averages; Free clears a dead worker's counts.
func TestCountsFollowConnectionsAndWorkers(t *testing.T) {
	board, err := Create(Conns)
	if err != nil {
		t.Fatal(err)
	}
	defer board.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := board.Join(2001, Policy{})
	other := board.Join(2002, Policy{})
	if _, _, n := board.sums(other.e); n != 0 {
		t.Errorf("a worker that serves no listener yet counts (%d)", n)
	}
	l := w.Listener(ln)
	dial(t, ln.Addr().String())
	c := mustAccept(t, l)
	if open, _, n := board.sums(other.e); open != 1 || n != 1 {
		t.Errorf("after one accept the other sees open=%d over %d workers, want 1 over 1", open, n)
	}
	c.Close()
	c.Close() // counted once
	if open, _, _ := board.sums(other.e); open != 0 {
		t.Errorf("after the close: open=%d, want 0", open)
	}
	l.Close()
	if _, _, n := board.sums(other.e); n != 0 {
		t.Errorf("a worker whose listener closed still counts (%d)", n)
	}
	board.Free(2001)
	if w.e.pid.Load() != 0 || w.e.accepted.Load() != 0 {
		t.Errorf("Free left pid %d accepted %d", w.e.pid.Load(), w.e.accepted.Load())
	}
	if again := board.Join(2003, Policy{}); again == nil || again.e != w.e {
		t.Errorf("the freed entry is not reused")
	}
}
