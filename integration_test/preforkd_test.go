//go:build linux

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// binDir holds the preforkd builds: preforkd-v1, -v2, -v2bad and -v2crash.
var binDir string

func TestMain(m *testing.M) {
	dir, err := testutil.Prepare("preforkd-it-",
		testutil.Build{Out: "preforkd-v1", Pkg: "../cmd/preforkd", LDFlags: "-X main.version=v1"},
		testutil.Build{Out: "preforkd-v2", Pkg: "../cmd/preforkd", LDFlags: "-X main.version=v2"},
		// Bad builds for canaries to catch: the same command line, a demo
		// that answers 500 to 20% of requests, or whose workers exit after 2 s.
		testutil.Build{Out: "preforkd-v2bad", Pkg: "../cmd/preforkd", LDFlags: "-X main.version=v2bad -X main.demoErrorRate=0.2"},
		testutil.Build{Out: "preforkd-v2crash", Pkg: "../cmd/preforkd", LDFlags: "-X main.version=v2crash -X main.demoCrashAfter=2s"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// Every client, load loop and process watcher has stopped.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// bin returns the path of a build.
func bin(version string) string { return filepath.Join(binDir, "preforkd-"+version) }

// Master is a running preforkd master started by a test.
type Master struct {
	*testutil.Process
	t       testing.TB
	Dir     string
	Port    int
	Metrics int
	Control string
	PIDFile string
}

// Opts configure startMaster.
type Opts struct {
	Workers int
	Args    []string // extra flags
	Command []string // external worker command
	Version string   // build to run (default v1)
	Env     []string
	NoWait  bool     // don't wait for readiness
	Control string   // control socket path (default: a fresh one)
	Wrapper []string // run the master through this command (it must exec it)
	Exe     string   // a binary built on server.Main to run instead of preforkd
}

// startMaster starts preforkd with a fresh port, metrics port, control
// socket and pid file, and waits until its first workers are all ready
// (the pid file appears). Cleanup kills whatever is left of it by pid.
func startMaster(t testing.TB, o Opts) *Master {
	t.Helper()
	if o.Version == "" {
		o.Version = "v1"
	}
	if o.Workers == 0 {
		o.Workers = 2
	}
	if o.Exe == "" {
		o.Exe = bin(o.Version)
	}
	dir := t.TempDir()
	m := &Master{t: t, Dir: dir, Port: testutil.FreePort(t), Metrics: testutil.FreePort(t), Control: filepath.Join(dir, "ctl.sock"),
		PIDFile: filepath.Join(dir, "preforkd.pid")}
	if o.Control != "" {
		m.Control = o.Control
	}
	args := []string{
		"-workers", strconv.Itoa(o.Workers),
		"-listen", fmt.Sprintf("http=tcp://127.0.0.1:%d", m.Port),
		"-metrics", fmt.Sprintf("127.0.0.1:%d", m.Metrics),
		"-control", m.Control, "-pidfile", m.PIDFile, "-grace", "10s",
	}
	args = append(args, o.Args...)
	if len(o.Command) > 0 {
		args = append(append(args, "--"), o.Command...)
	}
	m.Process = testutil.Start(t, testutil.Launch{Exe: o.Exe, Name: "preforkd", Dir: dir, Args: args, Env: o.Env,
		Wrapper: o.Wrapper, PIDFile: m.PIDFile})
	if !o.NoWait {
		m.WaitReady(30 * time.Second)
	}
	return m
}

// WaitReady waits until the pid file names a live master.
func (m *Master) WaitReady(d time.Duration) int { return m.WaitPIDFile(d) }

func (m *Master) filePID() int { return m.Process.PID() }

// PID is the current master's pid (after upgrades, the newest one).
func (m *Master) PID() int {
	if pid := m.filePID(); pid > 0 {
		return pid
	}
	return m.Cmd.Process.Pid
}

// Signal sends sig to the current master.
func (m *Master) Signal(sig syscall.Signal) {
	m.t.Helper()
	if err := unix.Kill(m.PID(), sig); err != nil {
		m.t.Fatalf("signal master: %v", err)
	}
}

// URL is the demo's address.
func (m *Master) URL(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", m.Port, path) }

// MetricsURL is the master's metrics endpoint's address.
func (m *Master) MetricsURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", m.Metrics, path)
}

// Status asks the control socket.
func (m *Master) Status() Status {
	m.t.Helper()
	st, err := m.status()
	if err != nil {
		m.t.Fatalf("status: %v\n%s", err, m.Log)
	}
	return st
}

func (m *Master) status() (Status, error) {
	c := unixClient(m.Control)
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://preforkd/status")
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return Status{}, err
	}
	return st, nil
}

func unixClient(path string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

// Status mirrors master.Status (the tests read the JSON, as users do).
type Status struct {
	PID        int    `json:"pid"`
	Generation int    `json:"generation"`
	Version    string `json:"version"`
	Desired    int    `json:"workers_desired"`
	Phase      string `json:"phase"`
	Slots      []struct {
		Slot      int     `json:"slot"`
		PID       int     `json:"pid"`
		State     string  `json:"state"`
		Restarts  int     `json:"restarts"`
		LastExit  string  `json:"last_exit"`
		Backoff   float64 `json:"backoff_seconds"`
		Replacing int     `json:"replacing"`
		Memory    *struct {
			RSS      uint64 `json:"rss_bytes"`
			PSS      uint64 `json:"pss_bytes"`
			PSSShmem uint64 `json:"pss_shmem_bytes"`
		} `json:"memory"`
	} `json:"slots"`
	Draining []struct {
		PID int `json:"pid"`
	} `json:"draining"`
	Spares []struct {
		PID   int    `json:"pid"`
		State string `json:"state"`
	} `json:"spares"`
	SparesPromoted  uint64 `json:"spares_promoted"`
	StatePages      string `json:"state_pages"`
	NotifyRejected  uint64 `json:"notify_rejected"`
	NotifyOversized uint64 `json:"notify_oversized"`
	NotifyMalformed uint64 `json:"notify_malformed"`
	StartFailures   uint64 `json:"start_failures"`
}

// ReadyPIDs are the pids of ready workers by slot (0 for a slot that has
// no ready worker).
func (st Status) ReadyPIDs() []int {
	pids := make([]int, len(st.Slots))
	for i, s := range st.Slots {
		if s.State == "ready" {
			pids[i] = s.PID
		}
	}
	return pids
}

// AllReady reports whether every slot has a ready worker and nothing drains.
func (st Status) AllReady(n int) bool {
	if len(st.Slots) != n || len(st.Draining) > 0 {
		return false
	}
	for _, s := range st.Slots {
		if s.State != "ready" || s.Replacing != 0 {
			return false
		}
	}
	return true
}

// WaitWorkers waits until n slots all have ready workers.
func (m *Master) WaitWorkers(n int, d time.Duration) Status {
	m.t.Helper()
	var st Status
	testutil.WaitFor(m.t, d, fmt.Sprintf("%d ready workers", n), func() bool {
		var err error
		st, err = m.status()
		return err == nil && st.AllReady(n)
	})
	return st
}

// reapOrphans reaps children of the test process that are not started by
// exec.Cmd (orphaned masters re-parented to us), without touching others.
func reapOrphans() { testutil.Reap() }

// markCmdChild records a pid a test started through exec.Cmd itself.
func markCmdChild(pid int) { testutil.MarkStarted(pid) }

// fresh is an HTTP client that opens a new connection for every request.
func fresh() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

// get fetches url and returns the status and body.
func get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// demoLine parses the first line of a demo answer.
type demoLine struct {
	Worker, PID, Generation int
	Version                 string
}

func parseDemo(body string) (demoLine, bool) {
	line, _, _ := strings.Cut(body, "\n")
	var d demoLine
	n, err := fmt.Sscanf(line, "preforkd demo worker=%d pid=%d generation=%d version=%s", &d.Worker, &d.PID, &d.Generation, &d.Version)
	return d, err == nil && n == 4
}

// logLines returns the log lines containing all of the given substrings.
func logLines(log string, subs ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		for _, s := range subs {
			if !strings.Contains(sc.Text(), s) {
				continue next
			}
		}
		out = append(out, sc.Text())
	}
	return out
}
