//go:build linux

package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"

	"golang.org/x/sys/unix"
)

// publicDir is a directory every user can enter (t.TempDir is 0700).
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "preforkd-pub-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// ctl runs `preforkd ctl -control PATH args...` and returns its output and
// exit code.
func (m *Master) ctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return runPreforkd(t, 60*time.Second, append([]string{"ctl", "-control", m.Control}, args...)...)
}

// preforkd ctl: status lists every slot with live pids; scale 5 gives 5
// workers; reload upgrades and restart replaces every pid, both with 0
// failed requests under load; the socket is mode 0600 and a process running
// as nobody is refused.
func TestCtl(t *testing.T) {
	pub := publicDir(t)
	m := startMaster(t, Opts{Workers: 3, Control: filepath.Join(pub, "ctl.sock")})
	st := m.WaitWorkers(3, 20*time.Second)
	out, code := m.ctl(t, "status")
	t.Logf("ctl status:\n%s", out)
	if code != 0 {
		t.Fatalf("ctl status: exit %d", code)
	}
	for _, s := range st.Slots {
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+%d\s+ready\s`, s.Slot, s.PID))
		if !re.MatchString(out) || !testutil.Alive(s.PID) {
			t.Errorf("ctl status does not list slot %d with live pid %d", s.Slot, s.PID)
		}
	}
	if out, code := m.ctl(t, "status", "-json"); code != 0 || !strings.Contains(out, `"workers_desired": 3`) {
		t.Errorf("ctl status -json: exit %d: %s", code, out)
	}

	if out, code := m.ctl(t, "scale", "5"); code != 0 {
		t.Fatalf("ctl scale 5: exit %d: %s", code, out)
	}
	m.WaitWorkers(5, 30*time.Second)
	if out, code := m.ctl(t, "scale", "0"); code == 0 || !strings.Contains(out, "0") {
		t.Errorf("ctl scale 0: exit %d: %s", code, out)
	}

	load := startLoad(t, m.URL("/"), 3, Fresh)
	ka := startLoad(t, m.URL("/"), 2, KeepAlive)
	before := m.Status().ReadyPIDs()
	if out, code := m.ctl(t, "restart"); code != 0 || !strings.Contains(out, "restart: ok") {
		t.Fatalf("ctl restart: exit %d: %s", code, out)
	}
	after := m.WaitWorkers(5, 30*time.Second).ReadyPIDs()
	for i := range before {
		if before[i] == after[i] {
			t.Errorf("slot %d kept pid %d through ctl restart", i, before[i])
		}
	}
	oldMaster := m.PID()
	testutil.CopyFile(t, bin("v2"), m.Exe)
	if out, code := m.ctl(t, "reload"); code != 0 || !strings.Contains(out, "reload: ok") {
		t.Fatalf("ctl reload: exit %d: %s", code, out)
	}
	testutil.WaitFor(t, 20*time.Second, "new master", func() bool {
		st, err := m.status()
		return err == nil && st.PID != oldMaster && st.Version == "v2" && st.AllReady(5)
	})
	time.Sleep(300 * time.Millisecond)
	load.Stop()
	ka.Stop()
	t.Logf("restart+reload under load: fresh ok %d failed %d; keep-alive ok %d failed %d", load.ok.Load(), load.failed.Load(), ka.ok.Load(), ka.failed.Load())
	if load.failed.Load()+ka.failed.Load() != 0 {
		t.Errorf("failed requests: %v %v", load.Errors(), ka.Errors())
	}

	fi, err := os.Stat(m.Control)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want 0600", fi.Mode().Perm())
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	exe := filepath.Join(pub, "preforkd")
	testutil.CopyFile(t, bin("v1"), exe)
	cmd := exec.Command(exe, "ctl", "-control", m.Control, "status")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	nout, err := cmd.CombinedOutput()
	t.Logf("ctl status as nobody: %v: %s", err, nout)
	if err == nil || !strings.Contains(string(nout), "permission denied") {
		t.Errorf("a process running as nobody was not refused: %v %s", err, nout)
	}
	if out, code := m.ctl(t, "stop"); code != 0 {
		t.Errorf("ctl stop: exit %d: %s", code, out)
	}
	testutil.WaitFor(t, 20*time.Second, "master to stop", func() bool { reapOrphans(); return !testutil.Alive(m.PID()) })
}

// A Python worker that knows only LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES and
// sd_notify serves through preforkd, sees LISTEN_PID equal to its own pid,
// and exits within 1 s when the master is SIGKILLed.
func TestPythonWorkers(t *testing.T) {
	script, _ := filepath.Abs("testdata/worker.py")
	m := startMaster(t, Opts{Workers: 2, Command: []string{"python3", script}})
	st := m.WaitWorkers(2, 30*time.Second)
	seen := map[string]bool{}
	re := regexp.MustCompile(`^python worker pid=(\d+) listen_pid=(\d+)\n$`)
	c := fresh()
	for i := 0; i < 100 && len(seen) < 2; i++ {
		code, body, err := get(c, m.URL("/"))
		if err != nil || code != 200 {
			t.Fatalf("request: %d %v", code, err)
		}
		mm := re.FindStringSubmatch(body)
		if mm == nil {
			t.Fatalf("answer %q is not the python worker's", body)
		}
		if mm[1] != mm[2] {
			t.Errorf("python worker pid %s saw LISTEN_PID=%s", mm[1], mm[2])
		}
		seen[mm[1]] = true
	}
	for _, pid := range st.ReadyPIDs() {
		if !seen[strconv.Itoa(pid)] {
			t.Logf("slot pid %d did not answer in 100 requests (seen %v)", pid, seen)
		}
	}
	m.Signal(unix.SIGKILL)
	m.Wait(5 * time.Second)
	start := time.Now()
	testutil.WaitFor(t, 5*time.Second, "python workers to exit", func() bool {
		for _, pid := range st.ReadyPIDs() {
			if testutil.Alive(pid) {
				return false
			}
		}
		return true
	})
	t.Logf("python workers gone %v after the master's SIGKILL", time.Since(start))
	if d := time.Since(start); d > time.Second {
		t.Errorf("python workers took %v to exit", d)
	}
}

// systemd-socket-activate hands preforkd its socket: preforkd serves on it
// and upgrades on it with 0 failed requests. An activated socket that no
// -listen names is an error.
func TestSocketActivation(t *testing.T) {
	act, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatal("systemd-socket-activate is required (Debian package systemd; .ci/run installs it)")
	}
	port := testutil.FreePort(t)
	m := startMaster(t, Opts{Workers: 2, Wrapper: []string{act, "-l", fmt.Sprintf("127.0.0.1:%d", port), "--fdname=web"},
		Args: []string{"-listen", fmt.Sprintf("web=tcp://127.0.0.1:%d", port)}, NoWait: true})
	m.Port = port
	// systemd-socket-activate starts the service on the first connection,
	// which is then served from the queue it left.
	time.Sleep(100 * time.Millisecond)
	if code, _, err := get(fresh(), m.URL("/")); err != nil || code != 200 {
		t.Fatalf("first request through the activated socket: %d %v\n%s", code, err, m.Log)
	}
	m.WaitReady(20 * time.Second)
	if !strings.Contains(m.Log.String(), "socket activation") {
		t.Errorf("the master did not say it used activated sockets:\n%s", m.Log)
	}
	load := startLoad(t, m.URL("/"), 3, Fresh)
	ka := startLoad(t, m.URL("/"), 2, KeepAlive)
	time.Sleep(300 * time.Millisecond)
	m.Upgrade("v2", 2)
	time.Sleep(500 * time.Millisecond)
	load.Stop()
	ka.Stop()
	t.Logf("activated socket: fresh ok %d failed %d; keep-alive ok %d failed %d; versions %v",
		load.ok.Load(), load.failed.Load(), ka.ok.Load(), ka.failed.Load(), load.Versions())
	if load.failed.Load()+ka.failed.Load() != 0 || load.Versions()["v2"] == 0 {
		t.Errorf("failed requests %v %v", load.Errors(), ka.Errors())
	}

	// No -listen for the activated socket: refused, naming it.
	other := testutil.FreePort(t)
	cmd := exec.Command(act, "-l", fmt.Sprintf("127.0.0.1:%d", other), bin("v1"), "-workers", "1", "-metrics", "off",
		"-control", filepath.Join(t.TempDir(), "c.sock"), "-listen", fmt.Sprintf("http=tcp://127.0.0.1:%d", testutil.FreePort(t)))
	var buf testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	markCmdChild(cmd.Process.Pid)
	time.Sleep(100 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", other), time.Second); err == nil {
		c.Close() // wakes systemd-socket-activate, which starts preforkd
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("preforkd with an unmatched activated socket did not exit")
	}
	out := buf.String()
	t.Logf("unmatched activated socket: %v: %s", err, out)
	if err == nil || !strings.Contains(string(out), strconv.Itoa(other)) {
		t.Errorf("an activated socket that no -listen names was accepted: %s", out)
	}
}

// As PID 1 in a new pid namespace, an orphaned grandchild is reaped (no
// zombie), and SIGTERM drains.
func TestPID1ReapsOrphans(t *testing.T) {
	script, _ := filepath.Abs("testdata/worker.py")
	// Each worker leaves an orphan behind: the subshell forks sleep and
	// exits, so sleep is re-parented to PID 1, the master.
	cmd := []string{"sh", "-c", "(sleep 0.3 &); exec python3 " + script}
	m := startMaster(t, Opts{Workers: 2, Command: cmd, NoWait: true,
		Wrapper: []string{"unshare", "--pid", "--fork", "--mount-proc"}})
	var master int
	testutil.WaitFor(t, 20*time.Second, "the master in the namespace", func() bool {
		kids := testutil.Children(m.Cmd.Process.Pid)
		if len(kids) == 1 {
			master = kids[0]
		}
		st, err := m.status()
		return err == nil && st.PID == 1 && st.AllReady(2)
	})
	time.Sleep(1500 * time.Millisecond) // the orphans have exited
	orphans := 0
	for _, p := range testutil.Procs() {
		if p.PPID == master && p.State == 'Z' {
			orphans++
		}
	}
	if orphans != 0 {
		t.Errorf("%d zombies under the PID-1 master", orphans)
	}
	if l := logLines(m.Log.String(), "worker exited"); len(l) != 0 {
		t.Errorf("a worker's exit was disturbed: %v", l)
	}
	if err := unix.Kill(master, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := m.Wait(20 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM to PID 1\n%s", code, m.Log)
	}
	if n := len(logLines(m.Log.String(), "reason=shutdown", "status=\"exit status 0\"")); n != 2 {
		t.Errorf("%d workers drained with exit status 0, want 2\n%s", n, m.Log)
	}
}

// With -user nobody, workers run with nobody's uid and gid (no
// supplementary groups) while the master stays root.
func TestUserNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (the master must be root to run workers as nobody)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-user", "nobody"}})
	st := m.WaitWorkers(2, 20*time.Second)
	if code, _, err := get(fresh(), m.URL("/")); err != nil || code != 200 {
		t.Fatalf("not serving as nobody: %d %v", code, err)
	}
	idOf := func(pid int) (uid, gid, groups string) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			switch {
			case strings.HasPrefix(l, "Uid:") && len(f) > 1:
				uid = f[1]
			case strings.HasPrefix(l, "Gid:") && len(f) > 1:
				gid = f[1]
			case strings.HasPrefix(l, "Groups:"):
				groups = strings.Join(f[1:], " ")
			}
		}
		return
	}
	for _, pid := range st.ReadyPIDs() {
		uid, gid, groups := idOf(pid)
		t.Logf("worker %d: uid %s gid %s groups %q", pid, uid, gid, groups)
		if uid != nobody.Uid || gid != nobody.Gid || groups != "" {
			t.Errorf("worker %d runs as uid %s gid %s groups %q, want %s %s and none", pid, uid, gid, groups, nobody.Uid, nobody.Gid)
		}
	}
	if uid, _, _ := idOf(m.PID()); uid != "0" {
		t.Errorf("master uid %s, want 0", uid)
	}
}

// A worker over -max-rss is replaced (its replacement ready first) with 0
// failed requests.
func TestMaxRSSRecycle(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-max-rss", "120MiB"}})
	before := m.WaitWorkers(2, 20*time.Second).ReadyPIDs()
	load := startLoad(t, m.URL("/"), 3, Fresh)
	ka := startLoad(t, m.URL("/"), 2, KeepAlive)
	code, body, err := get(fresh(), m.URL("/grow?mb=200"))
	if err != nil || code != 200 {
		t.Fatalf("/grow: %d %v", code, err)
	}
	grown, _ := parseDemo(body)
	testutil.WaitFor(t, 20*time.Second, "the grown worker to be replaced", func() bool {
		reapOrphans()
		return !testutil.Alive(grown.PID)
	})
	after := m.WaitWorkers(2, 20*time.Second).ReadyPIDs()
	time.Sleep(300 * time.Millisecond)
	load.Stop()
	ka.Stop()
	t.Logf("pids %v -> %v (grown: %d); fresh ok %d failed %d; keep-alive ok %d failed %d",
		before, after, grown.PID, load.ok.Load(), load.failed.Load(), ka.ok.Load(), ka.failed.Load())
	if load.failed.Load()+ka.failed.Load() != 0 {
		t.Errorf("failed requests: %v %v", load.Errors(), ka.Errors())
	}
	if len(logLines(m.Log.String(), "over -max-rss", fmt.Sprintf("pid=%d", grown.PID))) == 0 {
		t.Errorf("no log line says pid %d was over -max-rss", grown.PID)
	}
	for i := range before {
		if before[i] != grown.PID && after[i] != before[i] {
			t.Errorf("slot %d: pid %d under -max-rss was replaced too", i, before[i])
		}
	}
}

// -max-requests: a worker asks to be replaced after about N requests.
func TestMaxRequestsRecycle(t *testing.T) {
	m := startMaster(t, Opts{Workers: 1, Args: []string{"-max-requests", "100"}})
	first := m.WaitWorkers(1, 20*time.Second).ReadyPIDs()[0]
	c := fresh()
	pids := map[int]bool{}
	for i := 0; i < 400; i++ {
		code, body, err := get(c, m.URL("/"))
		if err != nil || code != 200 {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
		d, _ := parseDemo(body)
		pids[d.PID] = true
	}
	m.WaitWorkers(1, 20*time.Second)
	n := len(logLines(m.Log.String(), "replacing worker", "reason=max-requests"))
	t.Logf("400 requests with -max-requests 100: %d recycles, %d distinct pids", n, len(pids))
	if n < 2 || len(pids) < 3 || !pids[first] {
		t.Errorf("%d recycles and %d pids over 400 requests, want ≥ 2 and ≥ 3", n, len(pids))
	}
}
