//go:build linux

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// userMain is a user's whole program: server.Main with an app, one flag of
// its own and the shared table.
const userMain = `package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"

	"github.com/preforkd/preforkd/server"
	"github.com/preforkd/preforkd/state/table"
	"github.com/preforkd/preforkd/worker"
)

func main() {
	var greeting string
	server.Main(func(ctx context.Context, w *worker.Worker) error {
		t, err := table.Open(w.State())
		if err != nil {
			return err
		}
		return server.ServeHTTP(w, "http", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			v, _ := t.GetString(r.URL.Query().Get("k"))
			fmt.Fprintf(rw, "%s generation=%d value=%s\n", greeting, w.Generation(), v)
		}))
	}, server.WithFlags(func(fs *flag.FlagSet) {
		fs.StringVar(&greeting, "greeting", "hello", "how to greet")
	}))
}
`

// buildUserModule writes a module outside the project tree whose main is
// only server.Main, pointed at this checkout, and builds it.
func buildUserModule(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gomod := fmt.Sprintf("module example.com/usersvc\n\ngo 1.26.8\n\nrequire github.com/preforkd/preforkd v0.0.0\n\nreplace github.com/preforkd/preforkd => %s\n", root)
	for name, body := range map[string]string{"go.mod": gomod, "main.go": userMain} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(t.TempDir(), "usersvc")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the user module: %v\n%s", err, out)
	}
	return exe
}

// A user's module whose main is only server.Main gets the whole command
// line: its own flag, the preforkd flags, -version, state build, ctl, an
// upgrade under load, and a clean stop.
func TestUserModuleServerMain(t *testing.T) {
	exe := buildUserModule(t)
	out, err := exec.Command(exe, "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "usersvc ") {
		t.Errorf("-version: %q %v", out, err)
	}
	if out, err := exec.Command(exe, "-workers", "0").CombinedOutput(); exitCode(err) != 2 || !strings.Contains(string(out), "usersvc: -workers 0") {
		t.Errorf("a bad flag: exit %d, %q; want exit 2 naming usersvc and the flag", exitCode(err), out)
	}
	dir := t.TempDir()
	tsv, tbl := filepath.Join(dir, "data.tsv"), filepath.Join(dir, "data.tbl")
	if err := os.WriteFile(tsv, []byte("apple\tred\nbanana\tyellow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(exe, "state", "build", "-in", tsv, "-out", tbl).CombinedOutput(); err != nil || !strings.Contains(string(out), "2 keys") {
		t.Fatalf("state build: %q %v", out, err)
	}
	xdg := t.TempDir()
	m := startMaster(t, Opts{Exe: exe, Workers: 2, Control: filepath.Join(xdg, "usersvc.sock"),
		Args: []string{"-state", tbl, "-greeting", "hola"}})
	code, body, err := get(fresh(), m.URL("/?k=banana"))
	if err != nil || code != 200 || body != "hola generation=1 value=yellow\n" {
		t.Fatalf("GET: %d %q %v", code, body, err)
	}
	// ctl without -control finds the socket where a master of this name
	// puts it by default ($XDG_RUNTIME_DIR/usersvc.sock).
	ctl := exec.Command(exe, "ctl", "status")
	ctl.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+xdg)
	if out, err := ctl.CombinedOutput(); err != nil || strings.Count(string(out), " ready ") != 2 {
		t.Errorf("ctl status: %v\n%s", err, out)
	}
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := fresh()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			select {
			case <-stop:
				return
			default:
			}
			if code, _, err := get(c, m.URL("/?k=apple")); err == nil && code == 200 {
				ok.Add(1)
			} else {
				failed.Add(1)
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	m.Signal(syscall.SIGHUP)
	testutil.WaitFor(t, 30*time.Second, "generation 2 serving", func() bool {
		_, body, err := get(fresh(), m.URL("/?k=apple"))
		return err == nil && body == "hola generation=2 value=red\n"
	})
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	t.Logf("upgrade under load: %d ok, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("%d requests failed across the upgrade (%d ok)", failed.Load(), ok.Load())
	}
	pid := m.filePID()
	syscall.Kill(pid, syscall.SIGTERM)
	testutil.WaitFor(t, 20*time.Second, "the master to exit", func() bool { return !testutil.Alive(pid) })
	testutil.WaitFor(t, 10*time.Second, "every process gone", func() bool { reapOrphans(); return len(ourProcs()) == 0 })
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
