//go:build linux

package systemd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// bootScript runs in a private mount namespace: a tmpfs on /run holds an
// overlay of / (so the container sees this machine's own systemd and
// changes nothing of it), the units are copied into the overlay, and
// systemd-nspawn boots the host's systemd as the container's PID 1. The
// container shares the host's network: its services bind 127.0.0.1 ports
// the test chose.
const bootScript = `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/ov/upper /run/ov/work /run/ov/root
mount -t overlay overlay -o lowerdir=/,upperdir=/run/ov/upper,workdir=/run/ov/work /run/ov/root
cp -r "$UNITS"/. /run/ov/root/etc/systemd/system/
install -D -m 0755 "$SHARE"/preforkd /run/ov/root/usr/local/bin/preforkd
exec systemd-nspawn --register=no --keep-unit --link-journal=no -q -D /run/ov/root --bind-ro="$SHARE":/opt/preforkd -b -- systemd.unit=basic.target
`

// machine is a booted container with a real systemd as PID 1.
type machine struct {
	t    *testing.T
	cmd  *exec.Cmd
	pid1 int // the container's systemd, as the host sees it
	out  *testutil.SyncBuffer
}

// boot starts a container whose /etc/systemd/system has the files of
// units (a directory tree), whose /opt/preforkd is share (read-only) and
// whose /usr/local/bin/preforkd is share's preforkd, and waits until basic.target is active. Cleanup powers it off by
// killing its PID 1 (which ends its pid namespace) and its process group.
func boot(t *testing.T, units, share string) *machine {
	t.Helper()
	for _, tool := range []string{"systemd-nspawn", "nsenter", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install systemd-container and util-linux (.ci/run does)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the test boots a container")
	}
	m := &machine{t: t, out: &testutil.SyncBuffer{}}
	m.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c", bootScript)
	m.cmd.Env = append(os.Environ(), "UNITS="+units, "SHARE="+share)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { m.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		if m.pid1 > 0 {
			syscall.Kill(m.pid1, syscall.SIGKILL)
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("container console:\n%s", m.out)
		}
	})
	testutil.WaitFor(t, 30*time.Second, "the container's systemd", func() bool {
		m.pid1 = findPID1(m.cmd.Process.Pid)
		return m.pid1 > 0
	})
	testutil.WaitFor(t, 60*time.Second, "basic.target active in the container", func() bool {
		out, _ := m.try("systemctl", "is-active", "basic.target")
		return out == "active"
	})
	return m
}

// findPID1 is the systemd whose parent is a systemd-nspawn below root.
func findPID1(root int) int {
	for _, pid := range testutil.Descendants(root) {
		if comm(pid) == "systemd" {
			if p, ok := testutil.ProcInfo(pid); ok && comm(p.PPID) == "systemd-nspawn" {
				return pid
			}
		}
	}
	return 0
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// try runs a command in the container (all its namespaces) and returns
// its trimmed output (stdout and stderr).
func (m *machine) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pid := strconv.Itoa(m.pid1)
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", pid, "-m", "-u", "-i", "-n", "-p", "--"}, args...)...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return strings.TrimSpace(b.String()), err
}

// run is try that fails the test on error.
func (m *machine) run(args ...string) string {
	m.t.Helper()
	out, err := m.try(args...)
	if err != nil {
		m.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// prop is one property of a unit (systemctl show -p NAME --value).
func (m *machine) prop(unit, name string) string {
	m.t.Helper()
	return m.run("systemctl", "show", "-p", name, "--value", unit)
}

// writeFile writes a file under dir, creating its directories.
func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
