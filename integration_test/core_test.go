//go:build linux

package integration

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"

	"golang.org/x/sys/unix"
)

// 3 workers start; 300 requests on fresh connections are answered by at
// least 2 distinct worker pids, all children of the master; SIGTERM stops
// everything with exit 0 and no process left.
func TestServeAndStop(t *testing.T) {
	m := startMaster(t, Opts{Workers: 3})
	st := m.WaitWorkers(3, 20*time.Second)
	masterPID := m.Cmd.Process.Pid
	kids := map[int]bool{}
	for _, pid := range testutil.Children(masterPID) {
		kids[pid] = true
	}
	seen := map[int]int{}
	c := fresh()
	for i := 0; i < 300; i++ {
		code, body, err := get(c, m.URL("/"))
		if err != nil || code != 200 {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
		d, ok := parseDemo(body)
		if !ok {
			t.Fatalf("answer does not start with the demo line: %q", body)
		}
		if d.Version != "v1" || d.Generation != 1 {
			t.Fatalf("demo line %q: want version v1, generation 1", body)
		}
		seen[d.PID]++
	}
	t.Logf("answers by worker pid: %v (slots: %v)", seen, st.ReadyPIDs())
	if len(seen) < 2 {
		t.Errorf("300 requests answered by %d distinct workers, want at least 2", len(seen))
	}
	for pid := range seen {
		if !kids[pid] {
			t.Errorf("worker pid %d is not a child of the master %d (children %v)", pid, masterPID, testutil.Children(masterPID))
		}
	}
	workers := testutil.Children(masterPID)
	m.Signal(unix.SIGTERM)
	if code := m.Wait(20 * time.Second); code != 0 {
		t.Fatalf("master exit code %d after SIGTERM, want 0\n%s", code, m.Log)
	}
	for _, pid := range workers {
		if testutil.Alive(pid) {
			t.Errorf("worker %d still alive after the master stopped", pid)
		}
	}
	if z := testutil.Zombies(masterPID); len(z) > 0 {
		t.Errorf("zombies left: %v", z)
	}
}

// Under load on fresh connections, SIGKILL a worker 20 times: each is
// replaced in its slot, no connection is ever refused, failures are bounded
// by the requests in flight on the killed worker, no zombie remains.
func TestWorkerKillRespawn(t *testing.T) {
	const clients = 4
	// Every victim has served past the stable period, so each death is
	// replaced at once (an early death would back off, by design).
	m := startMaster(t, Opts{Workers: 3, Args: []string{"-stable-period", "200ms"}})
	m.WaitWorkers(3, 20*time.Second)
	load := startLoad(t, m.URL("/"), clients, Fresh)
	var respawn []time.Duration
	for i := 0; i < 20; i++ {
		st := m.WaitWorkers(3, 20*time.Second)
		slot := i % 3
		victim := st.Slots[slot].PID
		killed := time.Now()
		if err := unix.Kill(victim, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var ns Status
		testutil.WaitFor(t, 20*time.Second, "replacement in the slot", func() bool {
			var err error
			ns, err = m.status()
			if err != nil || len(ns.Slots) != 3 {
				return false
			}
			s := ns.Slots[slot]
			return s.PID != victim && s.PID != 0 && s.State == "ready"
		})
		respawn = append(respawn, time.Since(killed))
		if ns.Slots[slot].Restarts < 1 {
			t.Errorf("slot %d: restarts %d after a kill", slot, ns.Slots[slot].Restarts)
		}
		time.Sleep(120 * time.Millisecond)
	}
	load.Stop()
	sort.Slice(respawn, func(i, j int) bool { return respawn[i] < respawn[j] })
	t.Logf("20 kills: respawn-to-serving median %v, max %v; requests ok %d, failed %d (refused %d)",
		respawn[len(respawn)/2], respawn[len(respawn)-1], load.ok.Load(), load.failed.Load(), load.refused.Load())
	if load.refused.Load() != 0 {
		t.Errorf("%d connections refused, want 0: %v", load.refused.Load(), load.Errors())
	}
	// A killed worker can fail at most the requests it holds: one per
	// client at a time.
	if f := load.failed.Load(); f > 20*clients {
		t.Errorf("%d failed requests over 20 kills, want at most %d (in flight on the killed workers): %v", f, 20*clients, load.Errors())
	}
	if load.ok.Load() < 100 {
		t.Errorf("only %d requests succeeded under load", load.ok.Load())
	}
	if z := testutil.Zombies(m.Cmd.Process.Pid); len(z) > 0 {
		t.Errorf("zombies: %v", z)
	}
}

// SIGKILL the master: every worker exits within 1 s.
func TestMasterKillWorkersExit(t *testing.T) {
	m := startMaster(t, Opts{Workers: 3})
	st := m.WaitWorkers(3, 20*time.Second)
	pids := st.ReadyPIDs()
	m.Signal(unix.SIGKILL)
	m.Wait(5 * time.Second)
	start := time.Now()
	testutil.WaitFor(t, 5*time.Second, "workers to exit", func() bool {
		for _, pid := range pids {
			if testutil.Alive(pid) {
				return false
			}
		}
		return true
	})
	took := time.Since(start)
	t.Logf("all %d workers gone %v after the master's death", len(pids), took)
	if took > time.Second {
		t.Errorf("workers took %v to exit after the master was killed, want ≤ 1s", took)
	}
}

// A worker that stops sending heartbeats (SIGSTOP) is killed and replaced.
func TestHeartbeatKillsStuckWorker(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-heartbeat", "600ms"}})
	st := m.WaitWorkers(2, 20*time.Second)
	victim := st.Slots[1].PID
	if err := unix.Kill(victim, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	testutil.WaitFor(t, 15*time.Second, "the stopped worker to be replaced", func() bool {
		ns, err := m.status()
		return err == nil && len(ns.Slots) == 2 && ns.Slots[1].PID != victim && ns.Slots[1].State == "ready"
	})
	t.Logf("stopped worker replaced after %v", time.Since(stopped))
	testutil.WaitFor(t, 5*time.Second, "the stopped worker to be gone", func() bool { return !testutil.Alive(victim) })
	if l := logLines(m.Log.String(), "missed its heartbeat", fmt.Sprintf("pid=%d", victim)); len(l) == 0 {
		t.Errorf("no log line says pid %d missed its heartbeat", victim)
	}
	if l := logLines(m.Log.String(), "worker exited", fmt.Sprintf("pid=%d", victim), "reason=heartbeat"); len(l) == 0 {
		t.Errorf("exit of pid %d not logged with reason=heartbeat", victim)
	}
}

// A worker that exits at once keeps being restarted with growing delays
// (with -start-attempts 0: by default such a start fails, see
// TestFailedStart); the master stays up and uses under 2% CPU over 10 s.
func TestCrashLoopBackoff(t *testing.T) {
	m := startMaster(t, Opts{Workers: 1, Command: []string{"sh", "-c", "exit 3"}, NoWait: true, Args: []string{"-start-attempts", "0"}})
	testutil.WaitFor(t, 10*time.Second, "first restarts", func() bool {
		return len(logLines(m.Log.String(), "exited early")) >= 2
	})
	pid := m.Cmd.Process.Pid
	before, _ := testutil.ProcInfo(pid)
	t0 := time.Now()
	time.Sleep(10 * time.Second)
	after, ok := testutil.ProcInfo(pid)
	if !ok || after.State == 'Z' {
		t.Fatalf("master died in a crash loop\n%s", m.Log)
	}
	ticks := float64(after.UTime + after.STime - before.UTime - before.STime)
	cpu := ticks / 100 / time.Since(t0).Seconds() * 100 // USER_HZ is 100 on Linux
	lines := logLines(m.Log.String(), "exited early", "retry_in=")
	re := regexp.MustCompile(`retry_in=([0-9.a-zµ]+)`)
	var delays []time.Duration
	for _, l := range lines {
		if mm := re.FindStringSubmatch(l); mm != nil {
			d, err := time.ParseDuration(mm[1])
			if err == nil {
				delays = append(delays, d)
			}
		}
	}
	t.Logf("master CPU %.2f%% over 10s; %d deaths; delays %v", cpu, len(delays), delays)
	if cpu >= 2 {
		t.Errorf("master used %.2f%% CPU in a crash loop, want < 2%%", cpu)
	}
	if len(delays) < 4 {
		t.Fatalf("only %d restarts logged with a delay", len(delays))
	}
	// Each delay doubles (±20% jitter), so the 4th is at least 4× the 1st.
	if delays[3] < 3*delays[0] || delays[len(delays)-1] <= delays[0] {
		t.Errorf("restart delays do not grow: %v", delays)
	}
	for _, l := range logLines(m.Log.String(), "exited early") {
		for _, k := range []string{"slot=0", "pid=", "generation=1", "status=\"exit status 3\""} {
			if !strings.Contains(l, k) {
				t.Errorf("exit log line lacks %s: %s", k, l)
				break
			}
		}
	}
	st := m.Status()
	if st.Slots[0].Restarts < 4 || st.Slots[0].LastExit != "exit status 3" {
		t.Errorf("status: restarts %d, last exit %q", st.Slots[0].Restarts, st.Slots[0].LastExit)
	}
}

// SIGTTIN ×5 then SIGTTOU ×6 takes 3 workers to 8, then to 2.
func TestScaleSignals(t *testing.T) {
	m := startMaster(t, Opts{Workers: 3})
	m.WaitWorkers(3, 20*time.Second)
	// Standard signals don't queue: wait for each to take effect.
	for i := 1; i <= 5; i++ {
		m.Signal(unix.SIGTTIN)
		testutil.WaitFor(t, 10*time.Second, "scale up", func() bool { st, err := m.status(); return err == nil && st.Desired == 3+i })
	}
	m.WaitWorkers(8, 30*time.Second)
	for i := 1; i <= 6; i++ {
		m.Signal(unix.SIGTTOU)
		testutil.WaitFor(t, 10*time.Second, "scale down", func() bool { st, err := m.status(); return err == nil && st.Desired == 8-i })
	}
	st := m.WaitWorkers(2, 30*time.Second)
	testutil.WaitFor(t, 10*time.Second, "2 children", func() bool { return len(testutil.Children(m.Cmd.Process.Pid)) == 2 })
	t.Logf("after +5 -6: %d workers %v", len(st.Slots), st.ReadyPIDs())
}

// SIGUSR1 replaces every worker pid, one at a time, with 0 failed requests
// under load.
func TestRollingRestart(t *testing.T) {
	m := startMaster(t, Opts{Workers: 3})
	before := m.WaitWorkers(3, 20*time.Second).ReadyPIDs()
	fl := startLoad(t, m.URL("/"), 3, Fresh)
	ka := startLoad(t, m.URL("/"), 3, KeepAlive)
	time.Sleep(300 * time.Millisecond)
	m.Signal(unix.SIGUSR1)
	maxReplacing := 0
	testutil.WaitFor(t, 60*time.Second, "every pid replaced", func() bool {
		st, err := m.status()
		if err != nil || len(st.Slots) != 3 {
			return false
		}
		n := 0
		for _, s := range st.Slots {
			if s.Replacing != 0 {
				n++
			}
		}
		maxReplacing = max(maxReplacing, n)
		if !st.AllReady(3) {
			return false
		}
		for i, p := range st.ReadyPIDs() {
			if p == before[i] {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond)
	fl.Stop()
	ka.Stop()
	t.Logf("rolling restart: fresh ok %d failed %d; keep-alive ok %d failed %d; at most %d slot(s) replacing at once",
		fl.ok.Load(), fl.failed.Load(), ka.ok.Load(), ka.failed.Load(), maxReplacing)
	if fl.failed.Load()+ka.failed.Load() != 0 {
		t.Errorf("failed requests during a rolling restart: %v %v", fl.Errors(), ka.Errors())
	}
	if maxReplacing > 1 {
		t.Errorf("%d slots were replaced at once, want one at a time", maxReplacing)
	}
	// The log shows the order: each old worker stops only after the
	// replacement in its slot is ready.
	ready := logLines(m.Log.String(), "worker ready", "generation=1")
	stops := logLines(m.Log.String(), "stopping worker", "reason=rolling")
	if len(stops) != 3 {
		t.Errorf("%d rolling stops logged, want 3", len(stops))
	}
	if len(ready) < 6 {
		t.Errorf("%d ready lines, want 6", len(ready))
	}
}

// A control socket file left by a killed master does not stop the next
// start; a live master's socket does, with an error naming the path.
func TestStaleControlSocket(t *testing.T) {
	m := startMaster(t, Opts{Workers: 1})
	m.Signal(unix.SIGKILL)
	m.Wait(5 * time.Second)
	m.KillAll()
	m2 := startMaster(t, Opts{Workers: 1, Control: m.Control})
	st := m2.WaitWorkers(1, 20*time.Second)
	if st.PID != m2.Cmd.Process.Pid {
		t.Errorf("status from pid %d, want the new master %d", st.PID, m2.Cmd.Process.Pid)
	}
	// Now a live master owns it: a third start must fail, naming the path.
	out, code := runPreforkd(t, 10*time.Second, "-workers", "1", "-listen", fmt.Sprintf("http=tcp://127.0.0.1:%d", testutil.FreePort(t)),
		"-metrics", "off", "-control", m.Control)
	if code == 0 || !strings.Contains(out, m.Control) {
		t.Errorf("start on a live control socket: exit %d, output %q; want non-zero naming %s", code, out, m.Control)
	}
}
