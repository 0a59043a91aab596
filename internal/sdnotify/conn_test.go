//go:build linux

package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// receiver is the master's side: a unixgram socket bound to name.
func receiver(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	rc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen unixgram %q: %v", name, err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

func recv(t *testing.T, rc *net.UnixConn) string {
	t.Helper()
	rc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, MaxMessage+1)
	n, _, err := rc.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return string(buf[:n])
}

func TestDialEmptyMeansOff(t *testing.T) {
	c, err := Dial("")
	if c != nil || err != nil {
		t.Fatalf(`Dial("") = %v, %v; want nil, nil`, c, err)
	}
	if err := c.Send("READY=1"); err != nil {
		t.Errorf("nil Conn Send: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("nil Conn Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("nil Conn second Close: %v", err)
	}
}

func TestDialMissingSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nobody.sock")
	c, err := Dial(path)
	if err == nil {
		c.Close()
		t.Fatalf("Dial(%q) succeeded without a receiver", path)
	}
	if c != nil {
		t.Errorf("Dial returned a Conn with its error")
	}
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("error %v does not wrap ENOENT", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
}

func TestSendPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	testSend(t, receiver(t, path), path)
}

func TestSendAbstract(t *testing.T) {
	name := fmt.Sprintf("preforkd-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	// Bound with a leading NUL: the abstract namespace, with no file.
	rc := receiver(t, "\x00"+name)
	testSend(t, rc, "@"+name)
	if _, err := os.Lstat("@" + name); err == nil {
		t.Errorf("a file %q was created for an abstract socket", "@"+name)
	}
}

func testSend(t *testing.T, rc *net.UnixConn, addr string) {
	t.Helper()
	c, err := Dial(addr)
	if err != nil {
		t.Fatalf("Dial(%q): %v", addr, err)
	}
	if c == nil {
		t.Fatalf("Dial(%q) returned a nil Conn", addr)
	}
	defer c.Close()

	if err := c.Send("READY=1", "STATUS=x"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got, want := recv(t, rc), "READY=1\nSTATUS=x"; got != want {
		t.Errorf("received %q, want %q", got, want)
	}
	// One datagram per Send; the connection is reused.
	if err := c.Send("WATCHDOG=1"); err != nil {
		t.Fatalf("second Send: %v", err)
	}
	got := recv(t, rc)
	if got != "WATCHDOG=1" {
		t.Errorf("received %q, want WATCHDOG=1", got)
	}
	if f, err := Parse([]byte(got)); err != nil || !f.Watchdog {
		t.Errorf("Parse(%q) = %+v, %v", got, f, err)
	}

	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Send("READY=1"); err == nil {
		t.Errorf("Send after Close succeeded")
	} else if !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close: %v, want net.ErrClosed", err)
	}
}

func TestSendReceiverGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	rc := receiver(t, path)
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc.Close() // the master died
	err = c.Send("WATCHDOG=1")
	if err == nil {
		t.Fatalf("Send to a closed receiver succeeded")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v does not wrap ECONNREFUSED", err)
	}
	if !strings.Contains(err.Error(), "WATCHDOG=1") {
		t.Errorf("error %q does not quote the message", err)
	}
}

func TestSendConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	rc := receiver(t, path)
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const senders, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, senders) // one slot per sender: none blocks
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				if err := c.Send("WATCHDOG=1", fmt.Sprintf("STATUS=%d/%d", i, j)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	got := map[string]bool{}
	for len(got) < senders*each {
		rc.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 128)
		n, _, err := rc.ReadFromUnix(buf)
		if err != nil {
			t.Errorf("received %d of %d: %v", len(got), senders*each, err)
			rc.Close() // wake senders blocked on a full queue
			break
		}
		got[string(buf[:n])] = true
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Send: %v", err)
	}
	for i := 0; i < senders; i++ {
		for j := 0; j < each; j++ {
			if m := fmt.Sprintf("WATCHDOG=1\nSTATUS=%d/%d", i, j); !got[m] {
				t.Errorf("datagram %q missing", m)
			}
		}
	}
	// Concurrent Close and Send.
	var wg2 sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg2.Add(2)
		go func() { defer wg2.Done(); c.Close() }()
		go func() { defer wg2.Done(); c.Send("STOPPING=1") }()
	}
	wg2.Wait()
	if err := c.Send("READY=1"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after concurrent Close: %v, want net.ErrClosed", err)
	}
}
