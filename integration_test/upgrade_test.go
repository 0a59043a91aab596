//go:build linux

package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"

	"golang.org/x/sys/unix"
)

// 10 consecutive upgrades under load lose nothing: keep-alive, fresh and
// slow clients all the way through.
func TestUpgradesUnderLoad(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2})
	firstFds := 0
	ka := startLoad(t, m.URL("/"), 3, KeepAlive)
	fr := startLoad(t, m.URL("/"), 3, Fresh)
	slow := startLoad(t, m.URL("/sleep?ms=300"), 4, KeepAlive)
	var took []time.Duration
	var masters []int
	for i := 0; i < 10; i++ {
		v := []string{"v2", "v1"}[i%2]
		prev := m.PID()
		took = append(took, m.Upgrade(v, 2))
		masters = append(masters, prev)
		// New connections reach the new version.
		testutil.WaitFor(t, 10*time.Second, "answers from "+v, func() bool {
			_, body, err := get(fresh(), m.URL("/"))
			d, ok := parseDemo(body)
			return err == nil && ok && d.Version == v
		})
		waitGone(t, prev, 30*time.Second)
		time.Sleep(200 * time.Millisecond)
		if i == 0 {
			// Generation 2 is the first steady state to compare with:
			// (generation 1 never had a predecessor to talk to).
			firstFds = fdCount(m.PID())
		}
	}
	time.Sleep(500 * time.Millisecond)
	ka.Stop()
	fr.Stop()
	slow.Stop()
	lastFds := fdCount(m.PID())
	sorted := append([]time.Duration(nil), took...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	t.Logf("10 upgrades: SIGHUP to new generation serving: median %v, max %v", sorted[len(sorted)/2], sorted[len(sorted)-1])
	t.Logf("requests: keep-alive ok %d failed %d; fresh ok %d failed %d; slow ok %d failed %d; versions %v",
		ka.ok.Load(), ka.failed.Load(), fr.ok.Load(), fr.failed.Load(), slow.ok.Load(), slow.failed.Load(), fr.Versions())
	t.Logf("master fds: first %d, last %d", firstFds, lastFds)
	if n := ka.failed.Load() + fr.failed.Load() + slow.failed.Load(); n != 0 {
		t.Errorf("%d failed requests across upgrades: %v %v %v", n, ka.Errors(), fr.Errors(), slow.Errors())
	}
	if slow.ok.Load() < 20 {
		t.Errorf("only %d slow requests completed", slow.ok.Load())
	}
	if lastFds > firstFds {
		t.Errorf("the master's fd count grew from %d to %d over 10 upgrades", firstFds, lastFds)
	}
	for _, p := range masters {
		if testutil.Alive(p) {
			t.Errorf("old master %d still alive", p)
		}
	}
	m.onlyMaster(t)
}

// A client that never retries (wrk, 100 keep-alive connections) sees no
// socket error and no non-2xx answer across 10 upgrades.
func TestUpgradesUnderWrk(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Fatal("wrk is required (Debian package wrk; .ci/run installs it)")
	}
	m := startMaster(t, Opts{Workers: 2})
	cmd := exec.Command(wrk, "-t", "2", "-c", "100", "-d", "30s", "--latency", m.URL("/"))
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	markCmdChild(cmd.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	time.Sleep(time.Second)
	for i := 0; i < 10; i++ {
		m.Upgrade([]string{"v2", "v1"}[i%2], 2)
		time.Sleep(700 * time.Millisecond)
	}
	cmd.Process.Signal(unix.SIGINT) // wrk prints its report on SIGINT
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("wrk did not finish")
	}
	report := out.String()
	t.Logf("wrk across 10 upgrades:\n%s", report)
	reqs := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(report)
	if reqs == nil {
		t.Fatalf("no request count in wrk's report")
	}
	if n, _ := strconv.Atoi(reqs[1]); n < 1000 {
		t.Errorf("wrk made only %d requests", n)
	}
	if strings.Contains(report, "Socket errors") {
		t.Errorf("wrk saw socket errors across upgrades")
	}
	if strings.Contains(report, "Non-2xx") {
		t.Errorf("wrk saw non-2xx answers across upgrades")
	}
}

// Failed upgrades under load: the new binary exits 1, hangs past
// -upgrade-timeout, or cannot be executed. Each time the old generation
// keeps serving with 0 failed requests; then a good build upgrades.
func TestFailedUpgrades(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-upgrade-timeout", "2s"}})
	first := m.PID()
	load := startLoad(t, m.URL("/"), 3, Fresh)
	ka := startLoad(t, m.URL("/"), 2, KeepAlive)
	bad := []struct {
		name, body string
		mode       os.FileMode
		want       string
	}{
		{"exits 1", "#!/bin/sh\nexit 1\n", 0o755, "exited"},
		{"hangs", "#!/bin/sh\nexec sleep 600\n", 0o755, "timed out"},
		{"not executable", "#!/bin/sh\nexit 0\n", 0o644, "permission denied"},
	}
	good := filepath.Join(m.Dir, "good")
	testutil.CopyFile(t, m.Exe, good)
	for i, b := range bad {
		tmp := filepath.Join(m.Dir, "bad.tmp")
		if err := os.WriteFile(tmp, []byte(b.body), b.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(tmp, b.mode)
		if err := os.Rename(tmp, m.Exe); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		m.Signal(unix.SIGHUP)
		testutil.WaitFor(t, 20*time.Second, "upgrade failure logged", func() bool {
			return len(logLines(m.Log.String(), "upgrade failed")) == i+1
		})
		line := logLines(m.Log.String(), "upgrade failed")[i]
		t.Logf("%s: failed after %v: %s", b.name, time.Since(began).Round(time.Millisecond), line)
		if !strings.Contains(line, b.want) {
			t.Errorf("%s: log %q does not say %q", b.name, line, b.want)
		}
		if m.PID() != first || !testutil.Alive(first) {
			t.Fatalf("%s: the old master %d is not the one serving", b.name, first)
		}
		if code, _, err := get(fresh(), m.URL("/")); err != nil || code != 200 {
			t.Fatalf("%s: not serving after a failed upgrade: %v", b.name, err)
		}
		m.WaitWorkers(2, 10*time.Second)
	}
	// Whatever a failed new master started is gone, and the old master
	// still answers on its metrics and control sockets.
	m.onlyMaster(t)
	if code, _, err := get(fresh(), fmt.Sprintf("http://127.0.0.1:%d/metrics", m.Metrics)); err != nil || code != 200 {
		t.Errorf("/metrics after failed upgrades: %d %v", code, err)
	}
	testutil.CopyFile(t, bin("v2"), m.Exe)
	began := time.Now()
	m.Signal(unix.SIGHUP)
	testutil.WaitFor(t, 30*time.Second, "good upgrade", func() bool { p := m.filePID(); return p != first && p > 0 })
	t.Logf("good upgrade after the failures took %v", time.Since(began))
	m.WaitWorkers(2, 20*time.Second)
	time.Sleep(300 * time.Millisecond)
	load.Stop()
	ka.Stop()
	t.Logf("requests: fresh ok %d failed %d; keep-alive ok %d failed %d", load.ok.Load(), load.failed.Load(), ka.ok.Load(), ka.failed.Load())
	if load.failed.Load()+ka.failed.Load() != 0 {
		t.Errorf("failed requests: %v %v", load.Errors(), ka.Errors())
	}
	_ = good
}

// 20 SIGHUPs within 100 ms: one upgrade at a time, and afterwards exactly
// one master with its workers and no zombie.
func TestSighupStorm(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2})
	testutil.CopyFile(t, bin("v2"), m.Exe)
	for i := 0; i < 20; i++ {
		if pid := m.PID(); testutil.Alive(pid) {
			unix.Kill(pid, unix.SIGHUP)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	m.WaitWorkers(2, 30*time.Second)
	m.onlyMaster(t)
	refused := logLines(m.Log.String(), "upgrade refused")
	begins := logLines(m.Log.String(), "upgrade begins")
	st := m.Status()
	t.Logf("20 SIGHUPs: %d upgrades began, %d refused; now generation %d", len(begins), len(refused), st.Generation)
	if len(begins) == 0 || len(begins)+len(refused) < 2 {
		t.Fatalf("%d upgrades began and %d were refused", len(begins), len(refused))
	}
	if st.Generation != len(begins)+1 {
		t.Errorf("generation %d after %d upgrades", st.Generation, len(begins))
	}
	// Upgrades never overlap: all masters log to one stream, and each
	// "upgrade begins" is followed by its outcome before the next begins.
	open := false
	for _, l := range strings.Split(m.Log.String(), "\n") {
		switch {
		case strings.Contains(l, "upgrade begins"):
			if open {
				t.Errorf("an upgrade began while another was running: %s", l)
			}
			open = true
		case strings.Contains(l, "upgrade done"), strings.Contains(l, "upgrade failed"):
			open = false
		}
	}
}

// After SIGTTIN to 5 workers, an upgrade keeps 5 workers.
func TestUpgradeKeepsScale(t *testing.T) {
	m := startMaster(t, Opts{Workers: 3})
	for i := 4; i <= 5; i++ {
		m.Signal(unix.SIGTTIN)
		testutil.WaitFor(t, 10*time.Second, "scale up", func() bool { st, err := m.status(); return err == nil && st.Desired == i })
	}
	m.WaitWorkers(5, 20*time.Second)
	m.Upgrade("v2", 5)
	if st := m.Status(); st.Desired != 5 {
		t.Errorf("after upgrade: %d workers wanted, want 5", st.Desired)
	}
}

// A 300 ms request in flight on an old worker across the upgrade gets
// its 200.
func TestInFlightRequestSurvivesUpgrade(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2})
	type res struct {
		code int
		body string
		err  error
	}
	results := make(chan res, 4)
	for i := 0; i < 4; i++ {
		go func() {
			code, body, err := get(fresh(), m.URL("/sleep?ms=300"))
			results <- res{code, body, err}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	m.Upgrade("v2", 2)
	for i := 0; i < 4; i++ {
		r := <-results
		d, _ := parseDemo(r.body)
		if r.err != nil || r.code != 200 || !strings.Contains(r.body, "slept=300ms") {
			t.Errorf("in-flight request: %d %v %q", r.code, r.err, r.body)
		} else if d.Generation != 1 {
			t.Errorf("in-flight request answered by generation %d, want the old one", d.Generation)
		}
	}
}

// With a fake NOTIFY_SOCKET the master speaks systemd's protocol: READY=1
// at start; RELOADING=1 with MONOTONIC_USEC at an upgrade, then READY=1
// with a status naming the new master; STOPPING=1 on stop.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(want string) string {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case msg := <-msgs:
				if strings.Contains(msg, want) {
					return msg
				}
				t.Logf("(notify: %q)", msg)
			case <-timeout:
				t.Fatalf("no %q on NOTIFY_SOCKET", want)
			}
		}
	}
	m := startMaster(t, Opts{Workers: 2, Env: []string{"NOTIFY_SOCKET=" + sock}})
	next("READY=1")
	// Workers never see the master's NOTIFY_SOCKET.
	for _, pid := range testutil.Children(m.PID()) {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if strings.Contains(string(env), sock) {
			t.Errorf("worker %d inherited the master's NOTIFY_SOCKET", pid)
		}
	}
	m.Upgrade("v2", 2)
	reload := next("RELOADING=1")
	if !regexp.MustCompile(`MONOTONIC_USEC=\d+`).MatchString(reload) {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", reload)
	}
	// With -pidfile, no MAINPID=: systemd re-reads the pid file when the
	// old master exits (see deploy/systemd's test under a real systemd).
	main := next("handed over to pid ")
	if !strings.Contains(main, "handed over to pid "+strconv.Itoa(m.PID())) || !strings.Contains(main, "READY=1") || strings.Contains(main, "MAINPID=") {
		t.Errorf("hand-over message %q, want READY=1 naming pid %d, and no MAINPID=", main, m.PID())
	}
	m.Signal(unix.SIGTERM)
	next("STOPPING=1")
}

// An upgrade after a failed one uses the current offer, not the failed
// attempt's stale one still queued on the hand-off socket: the worker count
// changed in between is kept, and systemd hears of the new master's pid.
func TestUpgradeAfterFailedOneUsesCurrentState(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := startMaster(t, Opts{Workers: 3, Env: []string{"NOTIFY_SOCKET=" + sock}})
	os.WriteFile(filepath.Join(m.Dir, "broken"), []byte("#!/bin/sh\nexit 1\n"), 0o755)
	testutil.CopyFile(t, filepath.Join(m.Dir, "broken"), m.Exe)
	m.Signal(unix.SIGHUP)
	testutil.WaitFor(t, 10*time.Second, "the failed upgrade", func() bool { return len(logLines(m.Log.String(), "upgrade failed")) == 1 })
	m.Signal(unix.SIGTTOU)
	testutil.WaitFor(t, 10*time.Second, "scale down", func() bool { s, err := m.status(); return err == nil && s.Desired == 2 })
	m.Upgrade("v2", 2)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	want := "handed over to pid " + strconv.Itoa(m.PID())
	for {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no %s on NOTIFY_SOCKET: %v\n%s", want, err, m.Log)
		}
		if strings.Contains(string(buf[:n]), want) {
			break
		}
	}
}
