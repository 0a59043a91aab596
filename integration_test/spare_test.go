//go:build linux

package integration

import (
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// waitingSpare waits until the master has one spare waiting and returns
// its pid.
func waitingSpare(t *testing.T, m *Master, not int) int {
	t.Helper()
	var pid int
	testutil.WaitFor(t, 30*time.Second, "a waiting spare", func() bool {
		st, err := m.status()
		if err != nil || len(st.Spares) != 1 || st.Spares[0].State != "waiting" || st.Spares[0].PID == not {
			return false
		}
		pid = st.Spares[0].PID
		return true
	})
	return pid
}

// With -spare 1, a worker SIGKILLed after its stable period is replaced by
// the waiting spare (no process start for the slot): it becomes the slot's
// ready worker, serves as that slot (its app ran only after the
// promotion), and a new spare starts behind it. Each promotion's SIGKILL →
// ready time is logged; the bound is loose (a loaded 2-CPU machine); the
// bench measures it.
func TestSparePromotedAndReplaced(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-spare", "1", "-stable-period", "200ms"}})
	m.WaitWorkers(2, 30*time.Second)
	spare := waitingSpare(t, m, 0)
	if n := len(logLines(m.Log.String(), "stopping worker")); n != 0 {
		t.Fatalf("%d workers stopped before any kill", n)
	}
	var took []time.Duration
	for round := 0; round < 3; round++ {
		slot := round % 2
		st := m.Status()
		victim := st.Slots[slot].PID
		time.Sleep(300 * time.Millisecond) // past -stable-period
		began := time.Now()
		if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 10*time.Second, "the spare to serve the slot", func() bool {
			st, err := m.status()
			return err == nil && st.Slots[slot].PID == spare && st.Slots[slot].State == "ready"
		})
		took = append(took, time.Since(began))
		// It serves, as its slot: the demo's line names the slot it was
		// given, not the -1 it started with.
		c := fresh()
		testutil.WaitFor(t, 10*time.Second, "an answer from the promoted spare", func() bool {
			code, body, err := get(c, m.URL("/"))
			d, ok := parseDemo(body)
			if err != nil || code != 200 || !ok || d.PID != spare {
				return false
			}
			if d.Worker != slot {
				t.Fatalf("the promoted spare %d answers as worker %d, want %d: %q", spare, d.Worker, slot, body)
			}
			return true
		})
		next := waitingSpare(t, m, spare)
		if next == victim || next == spare {
			t.Fatalf("new spare %d", next)
		}
		spare = next
	}
	st := m.Status()
	if st.SparesPromoted != 3 {
		t.Errorf("spares_promoted %d, want 3", st.SparesPromoted)
	}
	if l := logLines(m.Log.String(), "a spare takes its slot"); len(l) != 3 {
		t.Errorf("%d promotion lines, want 3", len(l))
	}
	if l := logLines(m.Log.String(), "worker exited; restarting now"); len(l) != 0 {
		t.Errorf("a slot was restarted by a process start: %q", l)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("SIGKILL → promoted spare ready (polled over the control socket): %v", took)

	// An upgrade: the old master's spare is stopped with its generation,
	// the new master keeps its own.
	old := spare
	m.Upgrade("v2", 2)
	waitGone(t, old, 10*time.Second)
	if next := waitingSpare(t, m, old); next == old {
		t.Fatal("no new spare after the upgrade")
	}
	if l := logLines(m.Log.String(), "spare exited", "generation=1"); len(l) != 1 || !strings.Contains(l[0], "exit status 0") {
		t.Errorf("the old spare's exit: %q, want one line, exit status 0", l)
	}
}
