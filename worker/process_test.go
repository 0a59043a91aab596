//go:build linux

package worker

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// child is a worker process started by startWorker.
type child struct {
	cmd      *exec.Cmd
	stdout   bytes.Buffer
	stderr   bytes.Buffer
	done     chan struct{} // closed when Wait returned
	err      error         // Wait's error, set before done is closed
	lifeline *os.File      // the master's write end of the lifeline pipe
	notify   *notifyReceiver
	addr     string // the inherited listener's address
}

// startWorker starts this test binary as a worker (TestHelperWorker) with
// the contract's environment: listener "http" on fd 3, the lifeline read
// end on fd 4, the notify socket and a 300ms watchdog.
func startWorker(t *testing.T) *child {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // the child holds its own copy
	lnFile, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer lifeR.Close()
	t.Cleanup(func() { lifeW.Close() })

	c := &child{done: make(chan struct{}), lifeline: lifeW, notify: listenNotify(t), addr: ln.Addr().String()}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperWorker$", "-test.count=1")
	// A -race binary sleeps 1s at exit by default: take that out of the
	// exit deadline.
	gorace := "atexit_sleep_ms=0"
	var env []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "GORACE":
			gorace = v + " " + gorace
		case !strings.HasPrefix(k, "PREFORK_") && !strings.HasPrefix(k, "LISTEN_") && k != "NOTIFY_SOCKET" && !strings.HasPrefix(k, "WATCHDOG_"):
			env = append(env, kv)
		}
	}
	c.cmd.Env = append(env,
		"GORACE="+gorace,
		"WORKER_HELPER=1",
		"LISTEN_FDS=1",
		"LISTEN_FDNAMES=http",
		"PREFORK_WORKER=2",
		"PREFORK_GENERATION=7",
		"PREFORK_MASTER_FD=4",
		"NOTIFY_SOCKET="+c.notify.path,
		"WATCHDOG_USEC=300000",
		"PREFORK_GRACE=5s",
		"PREFORK_MAX_REQUESTS=100",
	)
	c.cmd.ExtraFiles = []*os.File{lnFile, lifeR} // fds 3 and 4
	c.cmd.Stdout = &c.stdout
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		// Kill is harmless after a clean exit, and ends a stuck child.
		c.cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			t.Logf("worker stdout:\n%s\nworker stderr:\n%s", c.stdout.String(), c.stderr.String())
		}
	})
	return c
}

// waitExit waits for the child to exit, and fails the test unless it exits
// 0 within timeout having printed cause as its context's cause.
func (c *child) waitExit(t *testing.T, timeout time.Duration, cause error) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("the worker did not exit within %v", timeout)
	}
	if c.err != nil {
		t.Errorf("the worker exited with %v, want status 0", c.err)
	}
	var got []string
	sc := bufio.NewScanner(bytes.NewReader(c.stdout.Bytes()))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CAUSE="); ok {
			got = append(got, v)
		}
	}
	if len(got) != 1 || got[0] != cause.Error() {
		t.Errorf("the worker's context cause: %q, want [%q]", got, cause)
	}
}

// ready checks the worker's first notifications: READY=1, then heartbeats
// every WATCHDOG_USEC/3, and that its inherited listener serves.
func (c *child) ready(t *testing.T) {
	t.Helper()
	// The first start of a -race test binary can take a while.
	if got := c.notify.next(t, 30*time.Second, "READY=1"); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	deadline := time.After(time.Second)
	beats := 0
	for beats < 2 {
		select {
		case m := <-c.notify.msgs:
			if m != "WATCHDOG=1" {
				t.Fatalf("notification %q after READY=1, want WATCHDOG=1", m)
			}
			beats++
		case <-deadline:
			t.Fatalf("%d WATCHDOG=1 within 1s of READY=1, want at least 2 (WATCHDOG_USEC=300000)", beats)
		}
	}

	conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "slot 2\n" {
		t.Errorf("the worker's inherited listener answered %q, %v; want %q", line, err, "slot 2\n")
	}
}

// The worker drains when the master dies (EOF on the lifeline), says
// STOPPING=1 on Close and exits 0.
func TestWorkerProcessMasterGone(t *testing.T) {
	c := startWorker(t)
	c.ready(t)
	if err := c.lifeline.Close(); err != nil {
		t.Fatal(err)
	}
	c.notify.await(t, 2*time.Second, "STOPPING=1")
	c.waitExit(t, 2*time.Second, ErrMasterGone)
}

// The worker drains on SIGTERM, says STOPPING=1 on Close and exits 0,
// while the master (the lifeline) is still there.
func TestWorkerProcessSIGTERM(t *testing.T) {
	c := startWorker(t)
	c.ready(t)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.notify.await(t, 2*time.Second, "STOPPING=1")
	c.waitExit(t, 2*time.Second, ErrTerminated)
}
