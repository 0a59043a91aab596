//go:build linux

package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Launch describes a program a test runs the way a user would.
type Launch struct {
	// Exe is the build to run. It is copied into Dir first, so that an
	// upgrade can rename a new build over the path it was started from.
	Exe string
	// Name is its file name in Dir. Defaults to Exe's base name.
	Name string
	// Dir is where it runs. Defaults to a new t.TempDir().
	Dir string
	// Args are its arguments; Env is added to the test's environment.
	Args, Env []string
	// Wrapper, when set, runs it through this command (which must exec it).
	Wrapper []string
	// PIDFile is the program's pid file (its -pidfile), read by PID.
	PIDFile string
}

// Process is a program started by a test. Its cleanup SIGKILLs, by pid,
// every process below the test that is still alive, reaps the orphans, and
// prints the program's output if the test failed.
type Process struct {
	Cmd     *exec.Cmd
	Exe     string      // the path it was started from
	Log     *SyncBuffer // stdout and stderr
	t       testing.TB
	pidfile string
	exited  chan struct{} // closed when Cmd has been reaped
	err     error         // Cmd.Wait's, once exited is closed
}

// started are the pids tests started through exec.Cmd, whose Wait reaps
// them; every other child of the test (a master an upgrade started,
// orphaned when the old one exited) is reaped by Reap.
var started sync.Map

// Started reports whether pid was started by Start (or marked by
// MarkStarted).
func Started(pid int) bool { _, ok := started.Load(pid); return ok }

// MarkStarted records a pid that the test started through exec.Cmd itself.
func MarkStarted(pid int) { started.Store(pid, true) }

// Reap reaps the test's zombie children that no exec.Cmd waits for.
func Reap() { ReapOrphans(Started) }

// Start starts l; the test becomes a subreaper first (see BecomeSubreaper).
func Start(t testing.TB, l Launch) *Process {
	t.Helper()
	if l.Dir == "" {
		l.Dir = t.TempDir()
	}
	if l.Name == "" {
		l.Name = filepath.Base(l.Exe)
	}
	p := &Process{Exe: filepath.Join(l.Dir, l.Name), Log: &SyncBuffer{}, t: t, pidfile: l.PIDFile, exited: make(chan struct{})}
	CopyFile(t, l.Exe, p.Exe)
	if len(l.Wrapper) > 0 {
		p.Cmd = exec.Command(l.Wrapper[0], append(append(append([]string{}, l.Wrapper[1:]...), p.Exe), l.Args...)...)
	} else {
		p.Cmd = exec.Command(p.Exe, l.Args...)
	}
	p.Cmd.Dir = l.Dir
	p.Cmd.Stdout, p.Cmd.Stderr = p.Log, p.Log
	p.Cmd.Env = append(os.Environ(), l.Env...)
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	MarkStarted(p.Cmd.Process.Pid)
	go func() { p.err = p.Cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.cleanup)
	return p
}

// KillAll SIGKILLs every live process below the test (by pid), waits (at
// most 10 s) for this one to be reaped, and reaps the orphans.
func (p *Process) KillAll() {
	for _, pid := range Live(Descendants(os.Getpid())) {
		unix.Kill(pid, unix.SIGKILL)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
	Reap()
}

func (p *Process) cleanup() {
	p.KillAll()
	if p.t.Failed() {
		p.t.Logf("output of %s:\n%s", filepath.Base(p.Exe), p.Log)
	}
}

// PID is the pid in the pid file (after upgrades, the newest master's),
// or 0.
func (p *Process) PID() int {
	b, err := os.ReadFile(p.pidfile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// WaitPIDFile waits until the pid file names a live process, and returns
// its pid.
func (p *Process) WaitPIDFile(d time.Duration) int {
	p.t.Helper()
	var pid int
	WaitFor(p.t, d, filepath.Base(p.Exe)+" ready (pid file)", func() bool {
		pid = p.PID()
		return pid > 0 && Alive(pid)
	})
	return pid
}

// Exited is closed when the process Start started has been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Wait waits up to d for the process Start started to exit and returns
// its exit code (-1 when killed by a signal); it fails the test after d.
func (p *Process) Wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		var ee *exec.ExitError
		switch {
		case p.err == nil:
			return 0
		case errors.As(p.err, &ee):
			return ee.ExitCode()
		}
		p.t.Fatalf("wait: %v", p.err)
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %v\n%s", filepath.Base(p.Exe), d, p.Log)
	}
	return 0
}

// CopyFile copies an executable into place atomically (write, then
// rename), as an upgrade's new build arrives.
func CopyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// Build is one `go build` that a TestMain runs before the tests.
type Build struct {
	Out     string // file name in the build directory
	Pkg     string // package path, as go build takes it
	LDFlags string // -ldflags, if any
}

// Prepare is what a TestMain of process tests does first: it makes the
// test a subreaper (the master an upgrade starts, orphaned when the old one
// exits, becomes the test's child, so that tests can count, end and reap
// it) and builds every b into a new temporary directory, which it returns
// (remove it after m.Run). With PREFORKD_TEST_RACE=1 the builds have the
// race detector.
func Prepare(prefix string, builds ...Build) (string, error) {
	if err := BecomeSubreaper(); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	for _, b := range builds {
		args := []string{"build", "-o", filepath.Join(dir, b.Out)}
		if os.Getenv("PREFORKD_TEST_RACE") == "1" {
			args = append(args, "-race") // the programs under test race-checked too
		}
		if b.LDFlags != "" {
			args = append(args, "-ldflags", b.LDFlags)
		}
		if out, err := exec.Command("go", append(args, b.Pkg)...).CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("build %s: %w\n%s", b.Pkg, err, out)
		}
	}
	return dir, nil
}
