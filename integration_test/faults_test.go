//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"

	"golang.org/x/sys/unix"
)

// notifyAddr reads the master's NOTIFY_SOCKET from a worker's initial
// environment.
func notifyAddr(t *testing.T, workerPID int) string {
	t.Helper()
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", workerPID))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bytes.Split(env, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("NOTIFY_SOCKET=")); ok {
			return string(v)
		}
	}
	t.Fatal("no NOTIFY_SOCKET in the worker's environment")
	return ""
}

// Notifications from a pid that is not a current worker are ignored and
// counted; oversized datagrams and floods neither crash nor block the master.
func TestUntrustedNotifySenders(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-heartbeat", "2s"}})
	st := m.WaitWorkers(2, 20*time.Second)
	addr := notifyAddr(t, st.Slots[0].PID)
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: "\x00" + strings.TrimPrefix(addr, "@"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A stranger claims readiness and sends heartbeats and a status.
	for _, msg := range []string{"READY=1", "WATCHDOG=1", "STATUS=i am a worker", "X_PREFORKD_RECYCLE=evil"} {
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 5*time.Second, "rejections counted", func() bool { s, err := m.status(); return err == nil && s.NotifyRejected >= 4 })
	// Oversized and malformed datagrams.
	conn.Write(bytes.Repeat([]byte("A"), 64<<10))
	conn.Write([]byte("no assignment here"))
	conn.Write([]byte{0, 1, 2, 0xff})
	testutil.WaitFor(t, 5*time.Second, "oversized and malformed counted", func() bool {
		s, err := m.status()
		return err == nil && s.NotifyOversized >= 1 && s.NotifyMalformed >= 2
	})
	// A flood: the master keeps answering, and the workers stay untouched.
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	sent := 0
	for i := 0; i < 20000; i++ {
		if _, err := conn.Write([]byte("WATCHDOG=1")); err != nil {
			break // a full queue blocks or fails the sender, never the master
		}
		sent++
	}
	began := time.Now()
	after := m.Status()
	t.Logf("flood of %d datagrams; status answered in %v: rejected %d, oversized %d, malformed %d",
		sent, time.Since(began), after.NotifyRejected, after.NotifyOversized, after.NotifyMalformed)
	if !after.AllReady(2) || after.ReadyPIDs()[0] != st.ReadyPIDs()[0] || after.ReadyPIDs()[1] != st.ReadyPIDs()[1] {
		t.Errorf("workers changed after a stranger's notifications: %v -> %v", st.ReadyPIDs(), after.ReadyPIDs())
	}
	if len(logLines(m.Log.String(), "replacing worker")) != 0 {
		t.Errorf("a stranger's recycle request was obeyed")
	}
	if code, _, err := get(fresh(), m.URL("/")); err != nil || code != 200 {
		t.Errorf("not serving after the flood: %v", err)
	}
}

// Running out of processes while starting workers (RLIMIT_NPROC for the
// workers' user) gives a logged error and backoff, never a crash.
func TestOutOfProcesses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: RLIMIT_NPROC is enforced on the workers' user (-user nobody)")
	}
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Fatal("prlimit (util-linux) is required")
	}
	m := startMaster(t, Opts{Workers: 4, NoWait: true, Args: []string{"-user", "nobody", "-backoff-max", "500ms", "-start-attempts", "0"},
		Wrapper: []string{"prlimit", "--nproc=2:2", "--"}})
	testutil.WaitFor(t, 20*time.Second, "failed starts", func() bool {
		return len(logLines(m.Log.String(), "cannot start worker")) >= 6
	})
	// RLIMIT_NPROC counts threads too: a Go worker that does get exec'd
	// may die creating its runtime threads, and is restarted with backoff
	// like any early death. Either way the master keeps trying: failed
	// starts plus early deaths go on growing.
	attempts := func(st Status) int {
		n := int(st.StartFailures)
		for _, s := range st.Slots {
			n += s.Restarts
		}
		return n
	}
	before := m.Status()
	time.Sleep(2 * time.Second)
	st := m.Status()
	line := logLines(m.Log.String(), "cannot start worker")[0]
	t.Logf("RLIMIT_NPROC=2 for nobody, 4 slots: start failures %d then %d, attempts %d then %d; %s",
		before.StartFailures, st.StartFailures, attempts(before), attempts(st), line)
	if !strings.Contains(line, "resource temporarily unavailable") || !strings.Contains(line, "retry_in=") {
		t.Errorf("the failure is not logged with its cause and a retry delay: %s", line)
	}
	if attempts(st) <= attempts(before) {
		t.Errorf("the master stopped retrying the slots (failed starts and early deaths %d then %d)", attempts(before), attempts(st))
	}
	if !testutil.Alive(m.Cmd.Process.Pid) || len(st.Slots) != 4 {
		t.Fatal("the master died or lost its slots")
	}
}

// Running out of file descriptors while starting workers (a low
// RLIMIT_NOFILE on the master) gives a logged error and backoff, never a
// crash; the workers it could start keep serving.
func TestOutOfFileDescriptors(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Fatal("prlimit (util-linux) is required")
	}
	// About 28 descriptors for a master with 2 workers, 2 more per worker.
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-backoff-max", "1s"}, Wrapper: []string{"prlimit", "--nofile=40:40", "--"}})
	m.WaitWorkers(2, 20*time.Second)
	for i := 0; i < 10; i++ {
		m.Signal(unix.SIGTTIN)
		time.Sleep(50 * time.Millisecond)
	}
	testutil.WaitFor(t, 20*time.Second, "failed starts", func() bool {
		return len(logLines(m.Log.String(), "cannot start worker", "too many open files")) >= 3
	})
	time.Sleep(time.Second)
	if !testutil.Alive(m.Cmd.Process.Pid) {
		t.Fatalf("the master died\n%s", m.Log)
	}
	line := logLines(m.Log.String(), "cannot start worker", "too many open files")[0]
	t.Logf("RLIMIT_NOFILE=40: %d failed starts; %s", len(logLines(m.Log.String(), "cannot start worker")), line)
	if !strings.Contains(line, "retry_in=") {
		t.Errorf("no retry delay in %s", line)
	}
	// Scale back down, one signal at a time (they don't queue): the
	// master recovers and answers again.
	for n := lastScaleTo(m.Log.String()); n > 2; {
		m.Signal(unix.SIGTTOU)
		testutil.WaitFor(t, 10*time.Second, "scale down", func() bool { return lastScaleTo(m.Log.String()) == n-1 })
		n--
	}
	testutil.WaitFor(t, 30*time.Second, "the master to answer with 2 workers", func() bool {
		st, err := m.status()
		return err == nil && st.AllReady(2)
	})
	if code, _, err := get(fresh(), m.URL("/")); err != nil || code != 200 {
		t.Errorf("not serving after fd exhaustion: %v", err)
	}
}

// lastScaleTo is the worker count of the last "scaling workers" log line.
func lastScaleTo(log string) int {
	lines := logLines(log, "scaling workers")
	if len(lines) == 0 {
		return 0
	}
	l := lines[len(lines)-1]
	i := strings.Index(l, " to=")
	n, _ := strconv.Atoi(strings.Fields(l[i+4:])[0])
	return n
}

// nofile is the soft and hard RLIMIT_NOFILE of pid, from /proc/<pid>/limits.
func nofile(t *testing.T, pid int) (soft, hard string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(l, "Max open files"))
			return f[0], f[1]
		}
	}
	t.Fatalf("no open-files limit for %d", pid)
	return "", ""
}

// The master keeps a reserve of descriptors for supervision: its soft
// RLIMIT_NOFILE is raised to the hard limit (the Go runtime does it at
// start, to hard-1 so that it can tell a later prlimit apart), while its
// workers get the limit they were given back: an external worker (here
// python) sees the limits its operator set. (A Go worker raises its own at
// start, as every Go program does.)
func TestMasterRaisesItsFdLimitNotTheWorkers(t *testing.T) {
	py, err := filepath.Abs("testdata/worker.py")
	if err != nil {
		t.Fatal(err)
	}
	m := startMaster(t, Opts{Workers: 1, Command: []string{"python3", py}, Wrapper: []string{"prlimit", "--nofile=256:4096", "--"}})
	if soft, hard := nofile(t, m.PID()); soft != "4095" || hard != "4096" {
		t.Errorf("master's RLIMIT_NOFILE %s:%s, want 4095:4096 (raised)", soft, hard)
	}
	for _, pid := range m.Status().ReadyPIDs() {
		if soft, hard := nofile(t, pid); soft != "256" || hard != "4096" {
			t.Errorf("worker's RLIMIT_NOFILE %s:%s, want the operator's 256:4096", soft, hard)
		}
	}
}
