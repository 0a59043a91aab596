//go:build linux

package integration

import (
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"

	"golang.org/x/sys/unix"
)

// Upgrade renames the build of version over the master's path, sends
// SIGHUP, and waits until the new master's workers all serve. It returns
// the time from SIGHUP to the new generation serving (the new master's pid
// file appears when every new worker has sent READY=1).
func (m *Master) Upgrade(version string, workers int) time.Duration {
	m.t.Helper()
	old := m.PID()
	oldGen := m.Status().Generation
	testutil.CopyFile(m.t, bin(version), m.Exe)
	began := time.Now()
	m.Signal(unix.SIGHUP)
	testutil.WaitFor(m.t, 30*time.Second, "the new master", func() bool { p := m.filePID(); return p != old && p > 0 })
	took := time.Since(began)
	// The old master answers on the control socket until it has handed
	// over; wait for the new one.
	var st Status
	testutil.WaitFor(m.t, 30*time.Second, "the new master's workers", func() bool {
		var err error
		st, err = m.status()
		return err == nil && st.PID == m.filePID() && st.AllReady(workers)
	})
	if st.Generation != oldGen+1 || st.Version != version {
		m.t.Fatalf("after upgrade: generation %d version %s, want %d %s", st.Generation, st.Version, oldGen+1, version)
	}
	return took
}

// waitGone waits until pid has exited and been reaped (no zombie).
func waitGone(t testing.TB, pid int, d time.Duration) {
	t.Helper()
	testutil.WaitFor(t, d, fmt.Sprintf("pid %d to be gone", pid), func() bool {
		reapOrphans()
		_, ok := testutil.ProcInfo(pid)
		return !ok
	})
}

func fdCount(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// ourProcs are the live processes below the test process.
func ourProcs() []int {
	var out []int
	for _, pid := range testutil.Descendants(os.Getpid()) {
		if testutil.Alive(pid) {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}

// onlyMaster checks that the processes below the test are exactly the
// current master and its workers, and that there is no zombie.
func (m *Master) onlyMaster(t testing.TB) {
	t.Helper()
	reapOrphans()
	st := m.Status()
	want := map[int]bool{st.PID: true}
	for _, pid := range testutil.Children(st.PID) {
		want[pid] = true
	}
	testutil.WaitFor(t, 15*time.Second, "only the current master and its workers", func() bool {
		reapOrphans()
		got := ourProcs()
		if len(got) != len(want) {
			return false
		}
		for _, p := range got {
			if !want[p] {
				return false
			}
		}
		return true
	})
	if z := testutil.Zombies(append([]int{os.Getpid()}, ourProcs()...)...); len(z) > 0 {
		t.Errorf("zombies: %v", z)
	}
}
