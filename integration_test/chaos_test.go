//go:build linux

package integration

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"

	"golang.org/x/sys/unix"
)

// masterGauge reads one unlabelled sample from the master's /metrics.
func (m *Master) masterGauge(name string) (float64, bool) {
	_, body, err := get(fresh(), fmt.Sprintf("http://127.0.0.1:%d/metrics", m.Metrics))
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// TestChaos runs mixed load while random faults hit the master and its
// workers: worker SIGKILL and SIGSTOP (the heartbeat must catch it),
// SIGTTIN/SIGTTOU, SIGUSR1, upgrades (some to a broken binary, some with a
// canary: of a good build, and of one answering 500 that is rolled back),
// scrapes and ctl status. Throughout and at the end: one master serving, the desired
// worker count reached, no zombie, bounded fds and goroutines, failures
// only from requests in flight on killed workers, and nothing left after
// SIGTERM. About 60 s; 10 s with -short.
func TestChaos(t *testing.T) {
	dur := 60 * time.Second
	if testing.Short() {
		dur = 10 * time.Second
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("CHAOS_SEED"), 10, 64); err == nil {
		seed = v // replay a run
	}
	rng := rand.New(rand.NewPCG(seed, 42))
	t.Logf("seed %d", seed)
	m := startMaster(t, Opts{Workers: 3, Args: []string{"-heartbeat", "1s", "-grace", "5s", "-upgrade-timeout", "5s", "-stable-period", "200ms", "-canary-min-requests", "50"}})
	m.WaitWorkers(3, 20*time.Second)
	broken := filepath.Join(m.Dir, "broken")
	os.WriteFile(broken, []byte("#!/bin/sh\nexit 1\n"), 0o755)

	const clients = 8
	ka := startLoad(t, m.URL("/"), 3, KeepAlive)
	fr := startLoad(t, m.URL("/"), 3, Fresh)
	slow := startLoad(t, m.URL("/sleep?ms=200"), 2, KeepAlive)

	desired := 3
	version := "v1"
	var kills, stops, upgrades, badUpgrades, goodCanaries, badCanaries, scrapes, statuses, rolls int
	var maxFds, maxGoroutines float64
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(200+rng.IntN(400)) * time.Millisecond)
		st, err := m.status()
		if err != nil {
			continue // a hand-over in progress
		}
		pids := st.ReadyPIDs()
		victim := pids[rng.IntN(len(pids))]
		switch rng.IntN(10) {
		case 0, 1:
			if victim > 0 && unix.Kill(victim, unix.SIGKILL) == nil {
				kills++
			}
		case 2:
			if victim > 0 && unix.Kill(victim, unix.SIGSTOP) == nil {
				stops++
			}
		case 3:
			if desired < 6 {
				m.Signal(unix.SIGTTIN)
				desired++
				testutil.WaitFor(t, 10*time.Second, "scale up", func() bool { s, err := m.status(); return err == nil && s.Desired == desired })
			}
		case 4:
			if desired > 2 {
				m.Signal(unix.SIGTTOU)
				desired--
				testutil.WaitFor(t, 10*time.Second, "scale down", func() bool { s, err := m.status(); return err == nil && s.Desired == desired })
			}
		case 5:
			m.Signal(unix.SIGUSR1)
			rolls++
		case 6:
			switch r := rng.IntN(4); {
			case r == 1 && st.Generation > 0:
				// A canary upgrade: of a build answering 500 to 20% of
				// requests (rolled back), or of a good one (passes).
				testutil.WaitFor(t, 20*time.Second, "one master", func() bool { reapOrphans(); return len(mastersBelow()) == 1 })
				m.WaitWorkers(desired, 30*time.Second)
				if rng.IntN(2) == 0 {
					testutil.CopyFile(t, bin("v2bad"), m.Exe)
					out, code := m.ctl(t, "reload", "-canary", "1s")
					testutil.CopyFile(t, bin(version), m.Exe)
					if code == 0 || !strings.Contains(out, "rolled back") {
						t.Errorf("canary upgrade to a bad build: exit %d, %s", code, out)
					}
					badCanaries++
				} else {
					version = map[string]string{"v1": "v2", "v2": "v1"}[version]
					testutil.CopyFile(t, bin(version), m.Exe)
					if out, code := m.ctl(t, "reload", "-canary", "1s"); code != 0 {
						t.Errorf("canary upgrade to a good build: exit %d, %s", code, out)
					}
					goodCanaries++
				}
				continue
			}
			if rng.IntN(3) == 0 {
				before := len(logLines(m.Log.String(), "upgrade failed"))
				testutil.CopyFile(t, broken, m.Exe)
				m.Signal(unix.SIGHUP)
				testutil.WaitFor(t, 20*time.Second, "bad upgrade to fail or be refused", func() bool {
					return len(logLines(m.Log.String(), "upgrade failed"))+len(logLines(m.Log.String(), "upgrade refused")) > before
				})
				testutil.CopyFile(t, bin(version), m.Exe)
				badUpgrades++
			} else if st.Generation > 0 {
				version = map[string]string{"v1": "v2", "v2": "v1"}[version]
				// The previous master must have exited first (tableflip).
				testutil.WaitFor(t, 20*time.Second, "one master", func() bool { reapOrphans(); return len(mastersBelow()) == 1 })
				m.WaitWorkers(desired, 30*time.Second)
				m.Upgrade(version, desired)
				upgrades++
			}
		case 7, 8:
			if v, ok := m.masterGauge("prefork_master_process_open_fds"); ok {
				maxFds = max(maxFds, v)
			} else if v, ok := m.masterGauge("process_open_fds"); ok {
				maxFds = max(maxFds, v)
			}
			if v, ok := m.masterGauge("prefork_master_go_goroutines"); ok {
				maxGoroutines = max(maxGoroutines, v)
			} else if v, ok := m.masterGauge("go_goroutines"); ok {
				maxGoroutines = max(maxGoroutines, v)
			}
			scrapes++
		case 9:
			if out, code := m.ctl(t, "status"); code != 0 || !strings.Contains(out, "SLOT") {
				t.Errorf("ctl status: exit %d: %s", code, out)
			}
			statuses++
		}
	}
	// Let stopped workers be caught by the heartbeat and every slot refill.
	st := m.WaitWorkers(desired, 60*time.Second)
	testutil.WaitFor(t, 30*time.Second, "exactly one master", func() bool { reapOrphans(); return len(mastersBelow()) == 1 })
	time.Sleep(500 * time.Millisecond)
	ka.Stop()
	fr.Stop()
	slow.Stop()
	// HTTP 500s come only from the bad builds' canaries: the limit below
	// is on requests that got no answer.
	non2xx := ka.non2xx.Load() + fr.non2xx.Load() + slow.non2xx.Load()
	failed := ka.failed.Load() + fr.failed.Load() + slow.failed.Load() - non2xx
	ok := ka.ok.Load() + fr.ok.Load() + slow.ok.Load()
	t.Logf("chaos %v: %d SIGKILL, %d SIGSTOP, %d upgrades, %d bad upgrades, %d good and %d bad canary upgrades, %d rolling restarts, %d scrapes, %d ctl status; final %d workers, generation %d",
		dur, kills, stops, upgrades, badUpgrades, goodCanaries, badCanaries, rolls, scrapes, statuses, desired, st.Generation)
	if non2xx > 0 && badCanaries == 0 {
		t.Errorf("%d non-2xx answers without a bad canary: %v %v %v", non2xx, ka.Errors(), fr.Errors(), slow.Errors())
	}
	t.Logf("requests ok %d, failed %d (refused %d); master max open fds %.0f, max goroutines %.0f",
		ok, failed, ka.refused.Load()+fr.refused.Load()+slow.refused.Load(), maxFds, maxGoroutines)
	if limit := int64((kills + stops) * clients); failed > limit {
		t.Errorf("%d failed requests, more than the %d that could be in flight on %d killed or stopped workers: %v %v %v",
			failed, limit, kills+stops, ka.Errors(), fr.Errors(), slow.Errors())
	}
	if r := ka.refused.Load() + fr.refused.Load() + slow.refused.Load(); r != 0 {
		t.Errorf("%d connections refused", r)
	}
	if maxFds > 200 || maxGoroutines > 300 {
		t.Errorf("master resources not bounded: %.0f fds, %.0f goroutines", maxFds, maxGoroutines)
	}
	m.onlyMaster(t)
	m.Signal(unix.SIGTERM)
	testutil.WaitFor(t, 30*time.Second, "every process gone after SIGTERM", func() bool { reapOrphans(); return len(ourProcs()) == 0 })
}

// mastersBelow lists the live preforkd masters below the test process:
// processes whose children include workers (a worker's environment has
// PREFORK_WORKER), or that are the first master.
func mastersBelow() []int {
	var out []int
	for _, pid := range ourProcs() {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if strings.Contains(string(env), "PREFORK_WORKER=") || strings.Contains(string(env), "PREFORK_EXEC_SHIM=") {
			continue // a worker
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), "-pidfile") {
			out = append(out, pid)
		}
	}
	return out
}
