//go:build linux

package integration

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
	"golang.org/x/sys/unix"
)

// A master that was itself stopped (SIGSTOP, a paused VM) for longer than
// -heartbeat does not kill its healthy workers on resume.
func TestPausedMasterKeepsWorkers(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-heartbeat", "1s"}})
	before := m.Status().ReadyPIDs()
	m.Signal(syscall.SIGSTOP)
	time.Sleep(4 * time.Second)
	m.Signal(syscall.SIGCONT)
	time.Sleep(3 * time.Second) // three heartbeats after the resume
	after := m.Status().ReadyPIDs()
	slices.Sort(before)
	slices.Sort(after)
	if !slices.Equal(before, after) {
		t.Errorf("workers %v before the pause, %v after: healthy workers were replaced\n%s", before, after, m.Log)
	}
	if l := logLines(m.Log.String(), "missed its heartbeat"); len(l) > 0 {
		t.Errorf("heartbeat kills after the master's pause: %v", l)
	}
	if l := logLines(m.Log.String(), "restarting the heartbeat watch"); len(l) == 0 {
		t.Errorf("the pause is not logged")
	}
}

// A descriptor the master inherited without close-on-exec (here fd 20,
// opened by the shell that starts it) does not leak into its workers.
func TestInheritedFdsDoNotLeakIntoWorkers(t *testing.T) {
	m := startMaster(t, Opts{Workers: 1, Wrapper: []string{"bash", "-c", `exec 20</dev/null; exec "$0" "$@"`}})
	if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/20", m.PID())); err != nil || target != "/dev/null" {
		t.Fatalf("the master does not hold fd 20 (%q, %v): the test is broken", target, err)
	}
	for _, pid := range m.Status().ReadyPIDs() {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/20", pid)); err == nil && target == "/dev/null" {
			t.Errorf("worker %d inherited the master's fd 20 (%s)", pid, target)
		}
	}
}

// External workers that do not speak the metrics protocol get no metrics
// socket, so scrapes never wait for them and count no timeouts.
func TestExternalWorkersDoNotSlowScrapes(t *testing.T) {
	py, err := filepath.Abs("testdata/worker.py")
	if err != nil {
		t.Fatal(err)
	}
	m := startMaster(t, Opts{Workers: 2, Command: []string{"python3", py}})
	var worst time.Duration
	for range 5 {
		t0 := time.Now()
		code, body, err := get(fresh(), fmt.Sprintf("http://127.0.0.1:%d/metrics", m.Metrics))
		if err != nil || code != 200 {
			t.Fatalf("scrape: %d %v", code, err)
		}
		worst = max(worst, time.Since(t0))
		if strings.Contains(body, "prefork_metrics_scrape_timeouts_total{") && !strings.Contains(body, `prefork_metrics_scrape_timeouts_total{worker="0"} 0`) {
			t.Errorf("scrape timeouts counted for external workers")
		}
	}
	t.Logf("slowest of 5 scrapes: %v", worst)
	if worst > 300*time.Millisecond {
		t.Errorf("a scrape took %v: it waited for workers that never answer", worst)
	}
	for _, pid := range m.Status().ReadyPIDs() {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if strings.Contains(string(env), "PREFORK_METRICS_FD=") {
			t.Errorf("external worker %d was given a metrics socket", pid)
		}
	}
}

// Idle keep-alive connections to /metrics cannot exhaust the master's descriptors:
// with 1,000 of them open (the master limited to 300 descriptors), a
// killed worker is still replaced, and /metrics answers once they go.
func TestIdleMetricsConnectionsDoNotStarveSupervision(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Wrapper: []string{"prlimit", "--nofile=300:300", "--"}})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 1000 {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.Metrics), 2*time.Second)
		if err != nil {
			t.Logf("dial after %d connections: %v", len(conns), err)
			break
		}
		conns = append(conns, c)
		// A keep-alive request: its answer is never read, and the
		// connection then stays idle.
		c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: preforkd\r\n\r\n"))
	}
	time.Sleep(time.Second) // let the master accept what it will
	victim := m.Status().ReadyPIDs()[0]
	syscall.Kill(victim, syscall.SIGKILL)
	testutil.WaitFor(t, 15*time.Second, "the killed worker's replacement ready", func() bool {
		st := m.Status()
		return st.AllReady(2) && !slices.Contains(st.ReadyPIDs(), victim)
	})
	if l := logLines(m.Log.String(), "cannot start worker"); len(l) > 0 {
		t.Errorf("the master ran out of descriptors: %s", l[0])
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	testutil.WaitFor(t, 20*time.Second, "/metrics to answer again", func() bool {
		code, _, err := get(fresh(), fmt.Sprintf("http://127.0.0.1:%d/metrics", m.Metrics))
		return err == nil && code == 200
	})
}

// When the master is killed, its workers drain: a request in flight still
// gets its answer, although the workers' stderr (a pipe the master read)
// is gone and the drain's log line cannot be written.
func TestMasterKilledWorkersStillDrain(t *testing.T) {
	m := startMaster(t, Opts{Workers: 1})
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, _, err := get(fresh(), m.URL("/sleep?ms=800"))
		done <- result{code, err}
	}()
	time.Sleep(200 * time.Millisecond) // the request is in the worker
	syscall.Kill(m.PID(), syscall.SIGKILL)
	select {
	case r := <-done:
		if r.err != nil || r.code != 200 {
			t.Errorf("the request in flight when the master died: %d %v, want 200", r.code, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight never finished")
	}
}

// preforkd ctl refuses a control socket that another user serves: a local
// user who bound the path first is not believed.
func TestCtlRefusesImpostor(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the impostor runs as nobody")
	}
	dir := worldWritableDir(t)
	path := filepath.Join(dir, "ctl.sock")
	asNobody(t, "listening", `import socket,sys,time
s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)
print("listening", flush=True)
c,_=s.accept(); c.recv(4096)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
time.sleep(20)`, path)
	got, code := runPreforkd(t, 10*time.Second, "ctl", "-control", path, "stop")
	t.Logf("ctl stop against an impostor: exit %d: %s", code, strings.TrimSpace(got))
	if code != 1 || !strings.Contains(got, "served by uid 65534") || strings.Contains(got, "stop: ok") {
		t.Errorf("ctl believed the impostor: exit %d, %q", code, got)
	}
}

// A FIFO as -state is refused at once (it used to hang with no output).
func TestStateFIFORefused(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "state.fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runPreforkd(t, 10*time.Second, "-workers", "1", "-listen", fmt.Sprintf("http=tcp://127.0.0.1:%d", testutil.FreePort(t)),
		"-metrics", "off", "-control", "off", "-state", fifo)
	if code != 2 || !strings.Contains(out, "-state") || !strings.Contains(out, "not a regular file") {
		t.Errorf("-state FIFO: exit %d, %q; want exit 2 naming -state", code, out)
	}
}

// symlinkSwapper is a local attacker (run as nobody): it waits (inotify)
// for the file name to be created in dir and at once renames a symlink to
// target over it, so that a chmod of the path by its creator would follow
// the symlink. It prints "swapped N" after each swap.
const symlinkSwapper = `import ctypes, os, sys
d, name, target = sys.argv[1:4]
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init()
if fd < 0 or libc.inotify_add_watch(fd, d.encode(), 0x100) < 0:  # IN_CREATE
    sys.exit("inotify: errno %d" % ctypes.get_errno())
link, path, want, n = os.path.join(d, ".swap"), os.path.join(d, name), name.encode(), 0
print("watching", flush=True)
while True:
    if not os.path.islink(link):
        os.symlink(target, link)
    if want in os.read(fd, 65536):
        os.rename(link, path)
        n += 1
        print("swapped", n, flush=True)
`

// The control socket's mode is set at its creation, never by a chmod of
// its path: a local user who swaps a symlink in for the socket (the
// -control directory is theirs to write) cannot make the master change
// another file's mode. The master runs under strace, which delays every
// chmod-family call by 500 ms: a chmod after bind would now always lose
// the race to the swapper, which renames its symlink over the socket as
// soon as it is created.
func TestControlSocketSymlinkSwap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the attacker runs as nobody")
	}
	dir := worldWritableDir(t)
	victim := filepath.Join(t.TempDir(), "victim.conf")
	if err := os.WriteFile(victim, []byte("root's file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := asNobody(t, "watching", symlinkSwapper, dir, "ctl.sock", victim)
	chmods := "chmod,fchmod,fchmodat" // Go's os.Chmod is fchmodat; strace 6.1 does not know fchmodat2
	m := startMaster(t, Opts{
		Exe:     buildTestdata(t, "slowstate"), // stays loading: the control socket is bound, no worker starts
		Workers: 1, NoWait: true, Control: filepath.Join(dir, "ctl.sock"),
		Env:     []string{"SLOWSTATE_GATE=" + filepath.Join(dir, "never")},
		Wrapper: []string{"strace", "-f", "-o", "/dev/null", "-e", "trace=" + chmods, "-e", "inject=" + chmods + ":delay_enter=500000"},
	})
	swapped := make(chan string, 1)
	go func() { l, _ := lines.ReadString('\n'); swapped <- l }()
	select {
	case l := <-swapped:
		if l != "swapped 1\n" {
			t.Fatalf("attacker: %q", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the control socket was not created (or not swapped) within 20 s\n%s", m.Log)
	}
	time.Sleep(time.Second) // past any delayed chmod
	if fi, err := os.Stat(victim); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("the victim's mode is %v (%v), was 0644: the master followed the swapped-in symlink", fi.Mode().Perm(), err)
	}
}

// worldWritableDir is a directory that any local user may write in (mode
// 0777, no sticky bit), outside t.TempDir's 0700 parent; removed at the end.
func worldWritableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "preforkd-ww-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// asNobody runs a Python script (Debian's python3: runnable by nobody) as
// uid nobody, a local attacker, and waits for its first line, which must
// be ready; the rest of its stdout is returned. Cleanup kills it.
func asNobody(t *testing.T, ready, script string, args ...string) *bufio.Reader {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", append([]string{"-c", script}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr testutil.SyncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	markCmdChild(cmd.Process.Pid)
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewReader(out)
	if l, _ := lines.ReadString('\n'); l != ready+"\n" {
		t.Fatalf("the script as nobody did not start (%q):\n%s", l, stderr.String())
	}
	return lines
}
