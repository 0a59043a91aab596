//go:build linux

package integration

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// runPreforkd runs the v1 build to completion and returns its output and
// exit code. It fails the test if the run takes longer than d.
func runPreforkd(t *testing.T, d time.Duration, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin("v1"), args...)
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	markCmdChild(cmd.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return out.String(), 0
	case <-time.After(d):
		for _, pid := range testutil.Descendants(cmd.Process.Pid) {
			syscallKill(pid)
		}
		cmd.Process.Kill()
		<-done
		t.Fatalf("preforkd %v still running after %v:\n%s", args, d, out.String())
	}
	return "", 0
}

// Bad input exits non-zero within a few seconds with one clear line that
// names the value, no stack trace, and nothing left running.
func TestBadInput(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := busy.Addr().String()
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "state.bin")
	os.WriteFile(unreadable, []byte("x"), 0o000)
	missing := filepath.Join(dir, "missing.bin")
	ctl := filepath.Join(dir, "ctl.sock")
	port := testutil.FreePort(t)
	base := []string{"-control", ctl, "-metrics", "off"}
	cases := []struct {
		name string
		args []string
		want string // the value the message must name
	}{
		{"port in use", []string{"-workers", "1", "-listen", "http=tcp://" + busyAddr}, busyAddr},
		{"metrics port in use", []string{"-workers", "1", "-listen", fmt.Sprintf("http=tcp://127.0.0.1:%d", port), "-metrics", busyAddr}, busyAddr},
		{"missing state", []string{"-workers", "1", "-state", missing}, missing},
		{"state is a directory", []string{"-workers", "1", "-state", dir}, dir},
		{"malformed listen", []string{"-listen", "http=tcp//127.0.0.1:80"}, "http=tcp//127.0.0.1:80"},
		{"bad scheme", []string{"-listen", "web=sctp://127.0.0.1:80"}, "sctp"},
		{"bad port", []string{"-listen", "web=tcp://127.0.0.1:99999"}, "99999"},
		{"workers zero", []string{"-workers", "0"}, "-workers 0"},
		{"workers negative", []string{"-workers", "-3"}, "-workers -3"},
		{"workers too many", []string{"-workers", "100000"}, "-workers 100000"},
		{"unknown flag", []string{"-bogus"}, "-bogus"},
		{"bad duration", []string{"-grace", "soon"}, "soon"},
		{"spare negative", []string{"-spare", "-1"}, "-spare -1"},
		{"spare with a command", []string{"-spare", "1", "--", "/bin/true"}, "-spare 1 with a worker command"},
	}
	if os.Getuid() != 0 {
		cases = append(cases, struct {
			name string
			args []string
			want string
		}{"unreadable state", []string{"-workers", "1", "-state", unreadable}, unreadable})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(testutil.Children(os.Getpid()))
			start := time.Now()
			args := append(append([]string{}, base...), c.args...)
			out, code := runPreforkd(t, 10*time.Second, args...)
			took := time.Since(start)
			out = strings.TrimSpace(out)
			t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), out)
			if code == 0 {
				t.Errorf("exit code 0, want non-zero")
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("message does not name %q: %q", c.want, out)
			}
			if n := strings.Count(out, "\n") + 1; n != 1 {
				t.Errorf("%d lines of output, want one", n)
			}
			if strings.Contains(out, "goroutine ") || strings.Contains(out, "panic") {
				t.Errorf("stack trace in output: %s", out)
			}
			if took > 5*time.Second {
				t.Errorf("took %v to fail", took)
			}
			if after := len(testutil.Children(os.Getpid())); after > before {
				t.Errorf("processes left behind: %v", testutil.Children(os.Getpid()))
			}
			if _, err := os.Stat(ctl); err == nil {
				t.Errorf("control socket %s left behind", ctl)
			}
		})
	}
}

func syscallKill(pid int) {
	p, err := os.FindProcess(pid)
	if err == nil {
		p.Kill()
	}
}
