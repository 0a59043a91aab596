//go:build linux

package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
	"golang.org/x/sys/unix"
)

// descendantPids reads the pids that workers wrote to path, one a line;
// the test's cleanup kills whichever of them are left, by pid.
func descendantPids(t *testing.T, path string) []int {
	t.Helper()
	b, _ := os.ReadFile(path)
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func killLeftovers(t *testing.T, path string) {
	t.Cleanup(func() {
		for _, pid := range descendantPids(t, path) {
			unix.Kill(pid, unix.SIGKILL)
		}
		reapOrphans()
	})
}

func alive(pids []int) []int {
	var out []int
	for _, pid := range pids {
		if testutil.Alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// What a worker starts ends with the worker, and with the master: a child
// that stays in the worker's process group, one that left it (setsid) and
// one of those that ignores SIGTERM. Each holds the listening socket (fd 3,
// inherited from the worker), so a survivor would keep the port taken.
func TestWorkerDescendantsEndWithWorkerAndMaster(t *testing.T) {
	py, err := filepath.Abs("testdata/worker.py")
	if err != nil {
		t.Fatal(err)
	}
	pidsFile := filepath.Join(t.TempDir(), "pids")
	killLeftovers(t, pidsFile)
	script := fmt.Sprintf(`sleep 300 & echo $! >> %[1]s
setsid sleep 300 & echo $! >> %[1]s
setsid sh -c 'trap "" TERM; while :; do sleep 1; done' & echo $! >> %[1]s
exec python3 %[2]s`, pidsFile, py)
	m := startMaster(t, Opts{Workers: 1, Command: []string{"sh", "-c", script}, Args: []string{"-grace", "2s"}})
	testutil.WaitFor(t, 10*time.Second, "three descendants", func() bool { return len(descendantPids(t, pidsFile)) == 3 })
	first := descendantPids(t, pidsFile)
	if l := alive(first); len(l) != 3 {
		t.Fatalf("descendants alive: %v of %v", l, first)
	}
	worker := m.Status().ReadyPIDs()[0]
	syscall.Kill(worker, syscall.SIGKILL)
	testutil.WaitFor(t, 20*time.Second, "the killed worker's descendants gone", func() bool { return len(alive(first)) == 0 })
	testutil.WaitFor(t, 20*time.Second, "the replacement's descendants", func() bool { return len(descendantPids(t, pidsFile)) == 6 })
	second := descendantPids(t, pidsFile)[3:]
	m.WaitWorkers(1, 20*time.Second)
	m.Signal(syscall.SIGTERM)
	if code := m.Wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM\n%s", code, m.Log)
	}
	if l := alive(second); len(l) != 0 {
		t.Errorf("still running after the master's stop: %v\n%s", l, m.Log)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", m.Port))
	if err != nil {
		t.Errorf("the port is still taken after the master's stop: %v", err)
	} else {
		ln.Close()
	}
	if l := logLines(m.Log.String(), "left behind"); len(l) == 0 {
		t.Errorf("the stop of left-behind processes is not logged\n%s", m.Log)
	}
}

// A worker that daemonizes (starts a process in a new session and exits)
// does not pile up daemons while its slot backs off.
func TestDaemonizingWorkerLeavesNoPile(t *testing.T) {
	pidsFile := filepath.Join(t.TempDir(), "pids")
	killLeftovers(t, pidsFile)
	script := fmt.Sprintf(`setsid sleep 300 & echo $! >> %s; exit 1`, pidsFile)
	m := startMaster(t, Opts{Workers: 1, NoWait: true, Command: []string{"sh", "-c", script},
		Args: []string{"-grace", "2s", "-backoff-max", "500ms", "-start-attempts", "0"}})
	testutil.WaitFor(t, 20*time.Second, "five daemonizing starts", func() bool { return len(descendantPids(t, pidsFile)) >= 5 })
	time.Sleep(time.Second)
	all := descendantPids(t, pidsFile)
	if l := alive(all); len(l) > 2 {
		t.Errorf("%d of the %d daemons started are running (want at most the newest 2)\n%s", len(l), len(all), m.Log)
	}
	m.Signal(syscall.SIGTERM)
	m.Wait(30 * time.Second)
	if l := alive(descendantPids(t, pidsFile)); len(l) != 0 {
		t.Errorf("daemons left after the master's stop: %v", l)
	}
}
