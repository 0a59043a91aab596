//go:build linux

package examples_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/preforkd/preforkd/internal/testutil"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

var binDir string

func TestMain(m *testing.M) {
	// The new master of an upgrade outlives the old one: as a subreaper the
	// test becomes its parent, so that it can end and reap it.
	if err := testutil.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "preforkd-examples-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, ex := range []string{"http", "grpc", "tcp", "state", "metrics"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, ex), "./"+ex).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", ex, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// app is one example running as a user runs it.
type app struct {
	t       *testing.T
	addr    string // the app's listener
	metrics string
	pidfile string
	cmd     *exec.Cmd
	log     *testutil.SyncBuffer
	exited  chan struct{}
}

// start runs example ex with 2 workers on a fresh loopback port, its
// listener named name, and waits until it serves (the pid file appears).
// Cleanup kills whatever is left of it, by pid.
func start(t *testing.T, ex, name string) *app {
	t.Helper()
	dir := t.TempDir()
	exe := filepath.Join(dir, ex)
	b, err := os.ReadFile(filepath.Join(binDir, ex))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	a := &app{t: t, addr: testutil.FreeAddr(t), metrics: testutil.FreeAddr(t), pidfile: filepath.Join(dir, "pid"), log: &testutil.SyncBuffer{}, exited: make(chan struct{})}
	a.cmd = exec.Command(exe, "-workers", "2", "-listen", name+"=tcp://"+a.addr, "-metrics", a.metrics,
		"-control", filepath.Join(dir, "ctl.sock"), "-pidfile", a.pidfile, "-grace", "10s")
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(a.cleanup)
	testutil.WaitFor(t, 30*time.Second, ex+" serving", func() bool { return a.pid() > 0 })
	return a
}

// pid is the current master's pid, from the pid file (0: none yet).
func (a *app) pid() int {
	b, err := os.ReadFile(a.pidfile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func (a *app) cleanup() {
	for _, pid := range testutil.Descendants(os.Getpid()) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
	}
	reap()
	if a.t.Failed() {
		a.t.Logf("log:\n%s", a.log)
	}
}

// stop sends SIGTERM to the current master and checks that it exits and
// that nothing it started is left.
func (a *app) stop() {
	a.t.Helper()
	pid := a.pid()
	syscall.Kill(pid, syscall.SIGTERM)
	testutil.WaitFor(a.t, 20*time.Second, "the master to exit", func() bool { reap(); return !testutil.Alive(pid) })
	testutil.WaitFor(a.t, 10*time.Second, "nothing left", func() bool { reap(); return len(testutil.Live(testutil.Descendants(os.Getpid()))) == 0 })
}

// started are the pids the test started through exec.Cmd (whose Wait
// reaps them); other children are masters an upgrade started.
var started sync.Map

func ours(pid int) bool { _, ok := started.Load(pid); return ok }

func reap() { testutil.ReapOrphans(ours) }

// underUpgrade runs call in a loop (bounded: 30 s) while it sends SIGHUP,
// until call reports generation 2; it returns the ok and failed counts.
func underUpgrade(t *testing.T, a *app, call func() (gen int, err error)) (ok, failed int64) {
	t.Helper()
	var nOK, nFailed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := call(); err != nil {
				nFailed.Add(1)
				lastErr.Store(err.Error())
			} else {
				nOK.Add(1)
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	syscall.Kill(a.pid(), syscall.SIGHUP)
	testutil.WaitFor(t, 30*time.Second, "generation 2 answering", func() bool {
		gen, err := call()
		return err == nil && gen == 2
	})
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	if e := lastErr.Load(); e != nil {
		t.Logf("last error: %v", e)
	}
	return nOK.Load(), nFailed.Load()
}

func TestHTTPExampleUpgrade(t *testing.T) {
	a := start(t, "http", "http")
	started.Store(a.cmd.Process.Pid, true)
	c := &http.Client{Timeout: 5 * time.Second}
	call := func() (int, error) {
		resp, err := c.Get("http://" + a.addr + "/")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var id struct{ Generation int }
		if err := json.NewDecoder(resp.Body).Decode(&id); err != nil || resp.StatusCode != 200 {
			return 0, fmt.Errorf("status %d, %v", resp.StatusCode, err)
		}
		return id.Generation, nil
	}
	ok, failed := underUpgrade(t, a, call)
	t.Logf("HTTP across an upgrade: %d ok, %d failed", ok, failed)
	if failed != 0 || ok == 0 {
		t.Errorf("%d of %d requests failed across the upgrade", failed, ok+failed)
	}
	resp, err := c.Get("http://" + a.addr + "/hello/ann")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "hello, ann (worker ") || !strings.Contains(string(b), "generation 2") {
		t.Errorf("router answer %q", b)
	}
	a.stop()
}

func TestGRPCExampleUpgrade(t *testing.T) {
	a := start(t, "grpc", "grpc")
	started.Store(a.cmd.Process.Pid, true)
	conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	call := func() (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var md metadata.MD
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md))
		if err != nil {
			return 0, err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return 0, fmt.Errorf("status %v", resp.GetStatus())
		}
		gen := md.Get("preforkd-generation")
		if len(gen) != 1 {
			return 0, fmt.Errorf("no preforkd-generation header: %v", md)
		}
		return strconv.Atoi(gen[0])
	}
	ok, failed := underUpgrade(t, a, call)
	t.Logf("gRPC across an upgrade: %d ok, %d failed", ok, failed)
	if failed != 0 || ok == 0 {
		t.Errorf("%d of %d calls failed across the upgrade", failed, ok+failed)
	}
	a.stop()
}

func TestTCPExample(t *testing.T) {
	a := start(t, "tcp", "tcp")
	started.Store(a.cmd.Process.Pid, true)
	c, err := net.DialTimeout("tcp", a.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "UPPER hello\nWHO\n")
	r := bufio.NewReader(c)
	if line, _ := r.ReadString('\n'); line != "HELLO\n" {
		t.Errorf("UPPER hello: %q", line)
	}
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "worker ") {
		t.Errorf("WHO: %q", line)
	}
	a.stop() // a connection left open does not hold the drain
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestStateExample(t *testing.T) {
	a := start(t, "state", "http")
	started.Store(a.cmd.Process.Pid, true)
	if got := get(t, "http://"+a.addr+"/kv/status/418"); got != "I'm a teapot\n" {
		t.Errorf("status/418: %q", got)
	}
	a.stop()
}

func TestMetricsExample(t *testing.T) {
	a := start(t, "metrics", "http")
	started.Store(a.cmd.Process.Pid, true)
	answer := get(t, "http://"+a.addr+"/hello/ann")
	var slot int
	if _, err := fmt.Sscanf(answer, "hello, ann (worker %d)", &slot); err != nil {
		t.Fatalf("answer %q: %v", answer, err)
	}
	want := fmt.Sprintf(`example_greetings_total{greeting="hello",worker="%d"} 1`, slot)
	testutil.WaitFor(t, 10*time.Second, want+" in /metrics", func() bool {
		return strings.Contains(get(t, "http://"+a.metrics+"/metrics"), want)
	})
	a.stop()
}
