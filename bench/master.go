package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"

	"golang.org/x/sys/unix"

	"github.com/preforkd/preforkd/master"
)

// logEvent is one JSON line of a master's log, stamped when the bench read
// it from the pipe.
type logEvent struct {
	at                     time.Time
	msg                    string
	slot, pid, generation  int
	startTime, masterReady time.Duration
	// phases are a "master ready" line's phase_* fields (master/phases.go),
	// by name without the prefix; reused its state_reused.
	phases map[string]time.Duration
	reused bool
}

// logTail reads a master's stderr (every later master and worker of the
// same tree writes to the same pipe) and keeps its events.
type logTail struct {
	mu     sync.Mutex
	events []logEvent
	last   []string // the last lines, for error messages
	wake   chan struct{}
}

func newLogTail(r io.ReadCloser) *logTail {
	t := &logTail{wake: make(chan struct{})}
	go func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			at := time.Now()
			var j struct {
				Msg        string `json:"msg"`
				Slot       *int   `json:"slot"`
				PID        int    `json:"pid"`
				Generation int    `json:"generation"`
				StartTime  int64  `json:"start_time"`
				Took       int64  `json:"took"`
			}
			line := sc.Text()
			ev := logEvent{at: at, slot: -1}
			if json.Unmarshal([]byte(line), &j) == nil {
				ev.msg, ev.pid, ev.generation = j.Msg, j.PID, j.Generation
				ev.startTime, ev.masterReady = time.Duration(j.StartTime), time.Duration(j.Took)
				if j.Slot != nil {
					ev.slot = *j.Slot
				}
				if j.Msg == "master ready" {
					ev.phases, ev.reused = masterPhases(line)
				}
			}
			t.mu.Lock()
			t.events = append(t.events, ev)
			if t.last = append(t.last, line); len(t.last) > 40 {
				t.last = t.last[1:]
			}
			close(t.wake)
			t.wake = make(chan struct{})
			t.mu.Unlock()
		}
	}()
	return t
}

// mark is the index of the next event.
func (t *logTail) mark() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.events)
}

// since returns the events from index i on.
func (t *logTail) since(i int) []logEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]logEvent(nil), t.events[i:]...)
}

// wait returns the first event from index i on that matches, waiting at
// most d.
func (t *logTail) wait(i int, d time.Duration, match func(logEvent) bool) (logEvent, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		t.mu.Lock()
		for ; i < len(t.events); i++ {
			if match(t.events[i]) {
				ev := t.events[i]
				t.mu.Unlock()
				return ev, nil
			}
		}
		wake := t.wake
		t.mu.Unlock()
		select {
		case <-wake:
		case <-timer.C:
			return logEvent{}, fmt.Errorf("no such log line within %v; last lines:\n%s", d, t.tail())
		}
	}
}

func (t *logTail) tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.last, "\n")
}

// Master is a running preforkd (or fastworker) master tree.
type Master struct {
	p                 *procs
	cmd               *exec.Cmd
	Exe, Dir          string
	Port, MetricsPort int
	Control, PIDFile  string
	Workers           int
	Log               *logTail
	ctl               *http.Client
	exited            chan struct{}
}

// startMaster copies bin into a directory of its own (so that an upgrade
// can rename another build over it), starts it with fresh ports, a control
// socket, a pid file and JSON logs, and waits until the pid file names it.
func startMaster(p *procs, tmp, bin string, workers int, extra ...string) (*Master, error) {
	return startMasterEnv(p, tmp, bin, nil, workers, extra...)
}

// startMasterEnv is startMaster with extra environment variables (which
// the workers inherit).
func startMasterEnv(p *procs, tmp, bin string, env []string, workers int, extra ...string) (*Master, error) {
	dir, err := os.MkdirTemp(tmp, "master-")
	if err != nil {
		return nil, err
	}
	m := &Master{p: p, Dir: dir, Exe: filepath.Join(dir, "preforkd"), Workers: workers,
		Control: filepath.Join(dir, "ctl.sock"), PIDFile: filepath.Join(dir, "preforkd.pid"), exited: make(chan struct{})}
	if m.Port, err = freePort(); err != nil {
		return nil, err
	}
	if m.MetricsPort, err = freePort(); err != nil {
		return nil, err
	}
	if err := copyExe(bin, m.Exe); err != nil {
		return nil, err
	}
	args := append([]string{
		"-workers", strconv.Itoa(workers),
		"-listen", fmt.Sprintf("http=tcp://127.0.0.1:%d", m.Port),
		"-metrics", fmt.Sprintf("127.0.0.1:%d", m.MetricsPort),
		"-control", m.Control, "-pidfile", m.PIDFile, "-grace", "10s", "-log-format", "json",
	}, extra...)
	m.cmd = exec.Command(m.Exe, args...)
	m.cmd.Dir = dir
	if env != nil {
		m.cmd.Env = append(os.Environ(), env...)
	}
	// A pipe of our own, not an io.Writer: Wait must not wait for the
	// later masters and workers that share the write end.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	m.cmd.Stdout, m.cmd.Stderr = w, w
	err = p.start(m.cmd)
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	m.Log = newLogTail(r)
	go func() { m.cmd.Wait(); close(m.exited) }()
	m.ctl = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", m.Control)
		}}}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if pid := m.PID(); pid > 0 && testutil.Alive(pid) {
			return m, nil
		}
		select {
		case <-m.exited:
			return nil, fmt.Errorf("%s exited at start:\n%s", bin, m.Log.tail())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s not ready in 90s:\n%s", bin, m.Log.tail())
		}
	}
}

// URL is the address of path on the workers' listener.
func (m *Master) URL(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", m.Port, path) }

// Addr is the workers' host:port.
func (m *Master) Addr() string { return fmt.Sprintf("127.0.0.1:%d", m.Port) }

// PID is the pid in the pid file (0 if none).
func (m *Master) PID() int {
	b, err := os.ReadFile(m.PIDFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Status asks the control socket: the same answer as
// "preforkd ctl -control PATH status -json", without starting a process
// per poll.
func (m *Master) Status() (master.Status, error) {
	var st master.Status
	resp, err := m.ctl.Get("http://preforkd/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// allReady reports whether st is a settled generation: every slot ready,
// nothing draining.
func allReady(st master.Status, workers int) bool {
	if len(st.Slots) != workers || st.Upgrading {
		return false
	}
	for _, s := range st.Slots {
		if s.State != "ready" || s.Replacing != 0 {
			return false
		}
	}
	return true
}

// waitStatus polls the control socket every ms until ok holds (at most d).
func (m *Master) waitStatus(d time.Duration, what string, ok func(master.Status) bool) (master.Status, error) {
	deadline := time.Now().Add(d)
	for {
		st, err := m.Status()
		if err == nil && ok(st) {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("%s: not within %v (last error %v):\n%s", what, d, err, m.Log.tail())
		}
		time.Sleep(time.Millisecond)
	}
}

// waitGone waits until pid has exited (reaping adopted orphans).
func (m *Master) waitGone(pid int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for testutil.Alive(pid) {
		m.p.reap()
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still alive after %v", pid, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// Stop stops the whole tree: SIGQUIT to the current master (a fast stop:
// it SIGKILLs its workers), then SIGKILL, by pid, to whatever is left.
func (m *Master) Stop() {
	if pid := m.PID(); pid > 0 {
		unix.Kill(pid, unix.SIGQUIT)
		m.waitGone(pid, 3*time.Second)
	}
	m.p.killAll()
	select {
	case <-m.exited:
	case <-time.After(5 * time.Second):
	}
}

// scrape fetches the master's /metrics.
func (m *Master) scrape(c *http.Client) (string, time.Duration, error) {
	began := time.Now()
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", m.MetricsPort))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	took := time.Since(began)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New("metrics: " + resp.Status)
	}
	return string(b), took, err
}

// masterPhases reads the phase_* fields (nanoseconds) and state_reused of
// a "master ready" JSON line.
func masterPhases(line string) (map[string]time.Duration, bool) {
	var all map[string]any
	if json.Unmarshal([]byte(line), &all) != nil {
		return nil, false
	}
	out := map[string]time.Duration{}
	for k, v := range all {
		if name, ok := strings.CutPrefix(k, "phase_"); ok {
			if f, ok := v.(float64); ok {
				out[name] = time.Duration(f)
			}
		}
	}
	reused, _ := all["state_reused"].(bool)
	return out, reused
}
