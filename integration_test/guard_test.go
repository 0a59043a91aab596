//go:build linux

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// A start that cannot succeed fails: the workers die before ever being
// ready, and after -start-attempts deaths of one slot the master stops and
// exits 1 with the worker's exit status and its last line.
func TestFailedStart(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, NoWait: true,
		Command: []string{"sh", "-c", "echo starting >&2; echo 'config: cannot open /etc/app.conf' >&2; exit 3"}})
	t0 := time.Now()
	code := m.Wait(30 * time.Second)
	took := time.Since(t0)
	log := m.Log.String()
	t.Logf("exit %d after %v", code, took.Round(time.Millisecond))
	if code != 1 {
		t.Fatalf("exit status %d, want 1\n%s", code, log)
	}
	for _, want := range []string{"the start failed", "died 3 times", "exit status 3", `config: cannot open /etc/app.conf`} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q\n%s", want, log)
		}
	}
	if n := len(logLines(log, "the start failed")); n < 1 {
		t.Errorf("no error line")
	}
	if left := testutil.Descendants(m.Cmd.Process.Pid); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
}

// Once a worker has been ready, the master never gives up on a slot, even
// when every later worker dies early.
func TestReadyOnceThenCrashesNeverGivesUp(t *testing.T) {
	m := startMaster(t, Opts{Workers: 1, NoWait: true, Args: []string{"-ready-delay", "50ms", "-backoff-max", "200ms"},
		Command: []string{"sh", "-c", "sleep 0.2; exit 4"}})
	testutil.WaitFor(t, 30*time.Second, "six early deaths", func() bool {
		return len(logLines(m.Log.String(), "exited early")) >= 6
	})
	select {
	case <-m.Exited():
		t.Fatalf("the master gave up after its workers had been ready\n%s", m.Log)
	default:
	}
	if strings.Contains(m.Log.String(), "the start failed") {
		t.Errorf("start failure reported after a worker had been ready")
	}
	m.Signal(syscall.SIGTERM)
	if code := m.Wait(15 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// A worker that is never ready is killed at its start timeout with a hint
// that says how to become ready (external command: sd_notify or
// -ready-delay).
func TestStartTimeoutHintExternal(t *testing.T) {
	m := startMaster(t, Opts{Workers: 1, NoWait: true, Args: []string{"-start-timeout", "300ms"},
		Command: []string{"sleep", "60"}})
	code := m.Wait(30 * time.Second)
	log := m.Log.String()
	if code != 1 {
		t.Errorf("exit %d, want 1 (a start that never gets ready fails)", code)
	}
	for _, want := range []string{"worker not ready in time", "send READY=1 to $NOTIFY_SOCKET", "-ready-delay"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q\n%s", want, log)
		}
	}
}

// buildTestdata builds a program of testdata/ into dir.
func buildTestdata(t *testing.T, name string) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", exe, "./testdata/"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	return exe
}

// A Go app that never calls Ready (plain http.Serve) is told how to.
func TestStartTimeoutHintGo(t *testing.T) {
	exe := buildTestdata(t, "noready")
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("EXAMPLE_ADDR=127.0.0.1:%d", testutil.FreePort(t)))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if cmd.ProcessState.ExitCode() != 1 {
			t.Errorf("exit: %v, want status 1", err)
		}
	case <-ctx.Done():
		t.Fatalf("no exit within 60 s\n%s", out.String())
	}
	if !strings.Contains(out.String(), "call w.Ready() (or serve with server.ServeHTTP or server.Serve)") {
		t.Errorf("no hint to call Ready:\n%s", out.String())
	}
}

// Package master's doc example, put in main, is no fork bomb: each worker
// (the same program) refuses to start a master, and the start fails with
// a message naming server.Run. Run in its own pid namespace, so that a
// regression cannot fork without bound on the test machine.
func TestMasterDocExampleInMain(t *testing.T) {
	exe := buildTestdata(t, "masterexample")
	dir := t.TempDir()
	cmd := exec.Command("unshare", "--pid", "--fork", "--kill-child", "--mount-proc", exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("EXAMPLE_ADDR=127.0.0.1:%d", testutil.FreePort(t)),
		fmt.Sprintf("EXAMPLE_METRICS=127.0.0.1:%d", testutil.FreePort(t)), "EXAMPLE_CONTROL="+filepath.Join(dir, "ctl.sock"))
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	peak := 0
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-tick.C:
			// unshare, then the program (pid 1 inside) and its descendants.
			if n := len(testutil.Descendants(cmd.Process.Pid)) - 1; n > peak {
				peak = n
			}
		case <-deadline:
			t.Fatalf("no exit within 30 s (peak %d processes)\n%s", peak, out.String())
		}
	}
	t.Logf("exit %d, peak %d processes (master + workers)", cmd.ProcessState.ExitCode(), peak)
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit status %d, want 1\n%s", code, out.String())
	}
	if peak > 4+2 {
		t.Errorf("peak %d processes, want at most workers+2 = 6", peak)
	}
	if !strings.Contains(out.String(), "server.Run") || !strings.Contains(out.String(), "the start failed") {
		t.Errorf("the message does not name server.Run and the failed start:\n%s", out.String())
	}
}

// An unwritable -pidfile is an error at start (exit 1 naming the path),
// and an upgrade whose pid file cannot be written fails at once, not at
// the upgrade timeout.
func TestPIDFileUnwritable(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "missing", "dir", "preforkd.pid")
	m := startMaster(t, Opts{Workers: 1, NoWait: true, Args: []string{"-pidfile", bad}})
	if code := m.Wait(20 * time.Second); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if log := m.Log.String(); !strings.Contains(log, "-pidfile "+bad) || !strings.Contains(log, "writable directory") {
		t.Errorf("the error does not name the path and the fix:\n%s", log)
	}

	m = startMaster(t, Opts{Workers: 1, Args: []string{"-upgrade-timeout", "30s"}})
	// The pid file becomes a directory: it cannot be replaced.
	if err := os.Remove(m.PIDFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m.PIDFile, 0o755); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	m.Signal(syscall.SIGHUP)
	testutil.WaitFor(t, 25*time.Second, "the upgrade to fail", func() bool {
		return len(logLines(m.Log.String(), "upgrade failed")) > 0
	})
	took := time.Since(t0)
	t.Logf("upgrade failed after %v (upgrade timeout 30s)", took.Round(time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("the upgrade failed only after %v", took)
	}
	if !strings.Contains(m.Log.String(), "cannot be written") {
		t.Errorf("the reason is not logged:\n%s", m.Log)
	}
	if code, _, err := get(fresh(), m.URL("/")); err != nil || code != 200 {
		t.Errorf("the old generation does not serve: %d %v", code, err)
	}
}
