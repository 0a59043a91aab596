//go:build linux

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
	"golang.org/x/sys/unix"
)

// mixedLoad is keep-alive and fresh-connection clients on "/".
type mixedLoad []*Load

func startMixed(t *testing.T, m *Master) mixedLoad {
	return mixedLoad{startLoad(t, m.URL("/"), 2, KeepAlive), startLoad(t, m.URL("/"), 2, Fresh)}
}

// stop stops the clients and returns what they saw: answers, connection
// errors (not HTTP statuses), and non-2xx answers.
func (ls mixedLoad) stop() (ok, connErrs, non2xx int64, errs []string) {
	for _, l := range ls {
		l.Stop()
		ok += l.ok.Load()
		connErrs += l.failed.Load() - l.non2xx.Load()
		non2xx += l.non2xx.Load()
		errs = append(errs, l.Errors()...)
	}
	return ok, connErrs, non2xx, errs
}

// A good build passes the canary and takes over, with no failed request.
func TestCanaryPassesGoodBuild(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-canary", "2s"}})
	load := startMixed(t, m)
	took := m.Upgrade("v2", 2)
	time.Sleep(300 * time.Millisecond)
	ok, connErrs, non2xx, errs := load.stop()
	t.Logf("upgrade with a 2 s canary took %v; %d requests, %d connection errors, %d non-2xx", took.Round(time.Millisecond), ok, connErrs, non2xx)
	if connErrs+non2xx != 0 {
		t.Errorf("%d connection errors, %d non-2xx answers: %v", connErrs, non2xx, errs)
	}
	if took < 2*time.Second {
		t.Errorf("the new generation took over after %v, before the 2 s canary could be judged", took)
	}
	if l := logLines(m.Log.String(), "canary passed"); len(l) != 1 || !strings.Contains(l[0], "requests") {
		t.Errorf("no (or more than one) \"canary passed\" line with figures: %q", l)
	}
}

// A build that answers 500 to 20% of requests is rolled back: ctl reload
// -canary fails with the figures, the old generation serves on untouched,
// no connection fails, and the rollback is counted by cause.
func TestCanaryRollsBackErrors(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2})
	before := m.WaitWorkers(2, 20*time.Second).ReadyPIDs()
	master := m.PID()
	load := startMixed(t, m)
	testutil.CopyFile(t, bin("v2bad"), m.Exe)
	out, code := m.ctl(t, "reload", "-canary", "3s")
	testutil.CopyFile(t, bin("v1"), m.Exe)
	time.Sleep(300 * time.Millisecond)
	ok, connErrs, non2xx, errs := load.stop()
	t.Logf("ctl reload: exit %d: %s", code, strings.TrimSpace(out))
	t.Logf("%d requests, %d connection errors, %d non-2xx (the canary's 500s)", ok, connErrs, non2xx)
	if code == 0 || !strings.Contains(out, "upgrade rolled back: canary 5xx ratio") || !strings.Contains(out, "for the old generation") {
		t.Errorf("ctl reload: exit %d, %q; want a failure naming the 5xx figures", code, out)
	}
	if connErrs != 0 {
		t.Errorf("%d connection errors: %v", connErrs, errs)
	}
	if non2xx == 0 {
		t.Error("no 500 seen: the canary did not serve, and the test proves nothing")
	}
	st := m.WaitWorkers(2, 20*time.Second)
	if st.PID != master || st.Generation != 1 || st.Version != "v1" || !slices.Equal(st.ReadyPIDs(), before) {
		t.Errorf("after the rollback: master %d generation %d %s workers %v; want %d, 1, v1, %v (untouched)",
			st.PID, st.Generation, st.Version, st.ReadyPIDs(), master, before)
	}
	if l := logLines(m.Log.String(), "upgrade rolled back: canary 5xx ratio", "cause=5xx"); len(l) != 1 {
		t.Errorf("the old master did not log the rollback once: %q", l)
	}
	for name, want := range map[string]float64{`prefork_upgrades_total{result="rolled_back"}`: 1, `prefork_upgrade_rollbacks_total{reason="5xx"}`: 1,
		`prefork_upgrades_total{result="failed"}`: 0} {
		if v, found := m.masterGauge(name); !found || v != want {
			t.Errorf("%s = %v (found %v), want %v", name, v, found, want)
		}
	}
}

// A build whose workers crash after 2 s of serving is rolled back by a
// 5 s canary (-canary, SIGHUP), and the rollback is counted as a crash.
func TestCanaryRollsBackCrash(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-canary", "5s"}})
	master := m.PID()
	load := startMixed(t, m)
	testutil.CopyFile(t, bin("v2crash"), m.Exe)
	m.Signal(unix.SIGHUP)
	testutil.WaitFor(t, 30*time.Second, "the rollback", func() bool {
		return len(logLines(m.Log.String(), "upgrade rolled back:")) > 0
	})
	testutil.CopyFile(t, bin("v1"), m.Exe)
	ok, connErrs, _, errs := load.stop()
	t.Logf("%d requests, %d connection errors (the crashed canary's accepted ones): %v", ok, connErrs, errs)
	l := logLines(m.Log.String(), "upgrade rolled back:")
	if !strings.Contains(l[0], "exited after serving") || !strings.Contains(l[0], "exit status 1") {
		t.Errorf("rollback reason %q: want the canary's exit after serving, with its status", l[0])
	}
	st := m.WaitWorkers(2, 20*time.Second)
	if st.PID != master || st.Generation != 1 || st.Version != "v1" {
		t.Errorf("after the rollback: master %d generation %d %s; want %d, 1, v1", st.PID, st.Generation, st.Version, master)
	}
	if v, found := m.masterGauge(`prefork_upgrade_rollbacks_total{reason="crash"}`); !found || v != 1 {
		t.Errorf("crash rollbacks = %v (found %v), want 1", v, found)
	}
	// The old master serves on and can still be upgraded.
	m.Upgrade("v2", 2)
}

// workersBelow counts the live worker processes below the test (both
// generations'): processes whose environment has PREFORK_WORKER.
func workersBelow() int {
	n := 0
	for _, pid := range testutil.Descendants(os.Getpid()) {
		if p, ok := testutil.ProcInfo(pid); !ok || p.State == 'Z' {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if strings.Contains(string(env), "PREFORK_WORKER=") {
			n++
		}
	}
	return n
}

// With -upgrade-surge 1 and 4 workers, an upgrade never runs more than 5
// worker processes (sampled every 10 ms), and no request fails.
func TestUpgradeSurge(t *testing.T) {
	m := startMaster(t, Opts{Workers: 4, Args: []string{"-upgrade-surge", "1"}})
	m.WaitWorkers(4, 20*time.Second)
	load := startMixed(t, m)
	stop := make(chan struct{})
	peak := make(chan int)
	go func() {
		p := 0
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				peak <- p
				return
			case <-tick.C:
				p = max(p, workersBelow())
			}
		}
	}()
	took := m.Upgrade("v2", 4)
	// The old generation drains its last worker.
	testutil.WaitFor(t, 30*time.Second, "one master", func() bool { reapOrphans(); return len(mastersBelow()) == 1 })
	close(stop)
	p := <-peak
	ok, connErrs, non2xx, errs := load.stop()
	t.Logf("upgrade with surge 1 took %v; peak %d worker processes; %d requests, %d failed", took.Round(time.Millisecond), p, ok, connErrs+non2xx)
	if p > 5 {
		t.Errorf("peak %d worker processes during the upgrade, want at most 4 + 1", p)
	}
	if p < 4 {
		t.Errorf("peak %d worker processes: the sampling saw nothing", p)
	}
	if connErrs+non2xx != 0 {
		t.Errorf("%d failed requests: %v", connErrs+non2xx, errs)
	}
	if l := logLines(m.Log.String(), "retiring one worker of this generation"); len(l) != 3 {
		t.Errorf("the old generation retired %d workers for the new one, want 3 (4 - surge 1):\n%s", len(l), strings.Join(l, "\n"))
	}
}

// A new master that dies in the middle of a surge-controlled upgrade
// leaves the old generation serving: the old master starts again the
// workers it retired for it.
func TestUpgradeSurgeFailureRestoresOldWorkers(t *testing.T) {
	m := startMaster(t, Opts{Workers: 4, Args: []string{"-upgrade-surge", "1"}})
	m.WaitWorkers(4, 20*time.Second)
	old := m.PID()
	testutil.CopyFile(t, bin("v2"), m.Exe)
	m.Signal(unix.SIGHUP)
	testutil.WaitFor(t, 30*time.Second, "the old generation to retire a worker", func() bool {
		return len(logLines(m.Log.String(), "retiring one worker of this generation")) > 0
	})
	for _, pid := range mastersBelow() {
		if pid != old {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
	testutil.WaitFor(t, 30*time.Second, "the retired workers started again", func() bool {
		return len(logLines(m.Log.String(), "starting again the workers the surge retired")) == 1
	})
	st := m.WaitWorkers(4, 30*time.Second)
	if st.PID != old || st.Generation != 1 || st.Version != "v1" || st.Desired != 4 {
		t.Errorf("after the failed upgrade: master %d generation %d %s desired %d; want %d, 1, v1, 4", st.PID, st.Generation, st.Version, st.Desired, old)
	}
	if code, body, err := get(fresh(), m.URL("/")); err != nil || code != 200 || !strings.Contains(body, "version=v1") {
		t.Errorf("after the failed upgrade: %d %q %v", code, body, err)
	}
}

// Canaries work for external workers, judged on their exits: a Python
// worker's upgrade passes a 1 s canary; one started while the crash switch
// is on exits after 1 s and is rolled back.
func TestCanaryExternalWorkers(t *testing.T) {
	script, err := filepath.Abs("testdata/worker.py")
	if err != nil {
		t.Fatal(err)
	}
	crash := filepath.Join(t.TempDir(), "crash")
	m := startMaster(t, Opts{Workers: 2, Command: []string{"python3", script}, Args: []string{"-canary", "2s"},
		Env: []string{"WORKER_CRASH_IF=" + crash}})
	m.WaitWorkers(2, 30*time.Second)
	m.Upgrade("v2", 2)
	if l := logLines(m.Log.String(), "canary passed"); len(l) != 1 || !strings.Contains(l[0], "judged on exits only") {
		t.Errorf("the external canary's pass: %q; want one line saying it was judged on exits only", l)
	}
	if err := os.WriteFile(crash, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the old master gone", func() bool { reapOrphans(); return len(mastersBelow()) == 1 })
	gen := m.Status().Generation
	// The new master may not have seen its predecessor's exit yet (it
	// refuses an upgrade until then): SIGHUP again after each refusal.
	hups := 0
	testutil.WaitFor(t, 30*time.Second, "the rollback", func() bool {
		log := m.Log.String()
		if len(logLines(log, "upgrade rolled back:", "cause=crash")) == 1 {
			return true
		}
		begun := len(logLines(log, "upgrade begins", fmt.Sprintf("generation=%d", gen)))
		if refused := len(logLines(log, "upgrade refused")); begun == 0 && refused >= hups {
			m.Signal(unix.SIGHUP)
			hups++
		}
		return false
	})
	if st := m.Status(); st.Generation != gen {
		t.Errorf("generation %d after the rollback, want %d", st.Generation, gen)
	}
}

// A canary with too few requests to be judged gets its window extended up
// to 3 × its duration, then passes on its exits alone.
func TestCanaryWindowExtendedForTooFewRequests(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-canary", "1s", "-canary-min-requests", "1000000"}})
	load := startMixed(t, m)
	took := m.Upgrade("v2", 2)
	load.stop()
	ext := logLines(m.Log.String(), "canary window extended")
	passed := logLines(m.Log.String(), "canary passed", "judged on exits only")
	t.Logf("upgrade took %v with %d extensions", took.Round(time.Millisecond), len(ext))
	if len(ext) < 2 || len(passed) != 1 {
		t.Errorf("%d extensions, %d passes on exits: want ≥ 2 and 1", len(ext), len(passed))
	}
	if took < 2500*time.Millisecond {
		t.Errorf("the upgrade took %v: the 1 s window was not extended (by 0.5 s at a time, up to 3 s)", took)
	}
}
