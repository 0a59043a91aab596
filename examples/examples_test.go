//go:build linux

package examples_test

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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

var binDir string

func TestMain(m *testing.M) {
	var builds []testutil.Build
	for _, ex := range []string{"http", "grpc", "tcp", "state", "metrics"} {
		builds = append(builds, testutil.Build{Out: ex, Pkg: "./" + ex})
	}
	dir, err := testutil.Prepare("preforkd-examples-", builds...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// app is one example running as a user runs it.
type app struct {
	*testutil.Process
	t       *testing.T
	addr    string // the app's listener
	metrics string
}

// start runs example ex with 2 workers on a fresh loopback port, its
// listener named name, and waits until it serves (the pid file appears).
// Cleanup kills whatever is left of it, by pid.
func start(t *testing.T, ex, name string) *app {
	t.Helper()
	dir := t.TempDir()
	a := &app{t: t, addr: testutil.FreeAddr(t), metrics: testutil.FreeAddr(t)}
	pidfile := filepath.Join(dir, "pid")
	a.Process = testutil.Start(t, testutil.Launch{Exe: filepath.Join(binDir, ex), Dir: dir, PIDFile: pidfile,
		Args: []string{"-workers", "2", "-listen", name + "=tcp://" + a.addr, "-metrics", a.metrics,
			"-control", filepath.Join(dir, "ctl.sock"), "-pidfile", pidfile, "-grace", "10s"}})
	a.WaitPIDFile(30 * time.Second)
	return a
}

// stop sends SIGTERM to the current master and checks that it exits and
// that nothing it started is left.
func (a *app) stop() {
	a.t.Helper()
	pid := a.PID()
	syscall.Kill(pid, syscall.SIGTERM)
	testutil.WaitFor(a.t, 20*time.Second, "the master to exit", func() bool { testutil.Reap(); return !testutil.Alive(pid) })
	testutil.WaitFor(a.t, 10*time.Second, "nothing left", func() bool { testutil.Reap(); return len(testutil.Live(testutil.Descendants(os.Getpid()))) == 0 })
}

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
	syscall.Kill(a.PID(), syscall.SIGHUP)
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
	if got := get(t, "http://"+a.addr+"/kv/status/418"); got != "I'm a teapot\n" {
		t.Errorf("status/418: %q", got)
	}
	a.stop()
}

func TestMetricsExample(t *testing.T) {
	a := start(t, "metrics", "http")
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
