package deploy

import (
	"debug/elf"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// dockerfile is the repository's Dockerfile.
func dockerfile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The Dockerfile builds in one stage and ships the binary alone on a
// distroless (or scratch) base, as a non-root user, declaring both ports.
func TestDockerfile(t *testing.T) {
	df := dockerfile(t)
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, have FROM %v", froms)
	}
	if base := froms[len(froms)-1][1]; !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("final base %s: want distroless static or scratch", base)
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(df)
	if user == nil || strings.HasPrefix(user[1], "0") || strings.HasPrefix(user[1], "root") {
		t.Errorf("USER %v: want a non-root user", user)
	}
	if !regexp.MustCompile(`(?m)^EXPOSE .*\b9100\b`).MatchString(df) || !regexp.MustCompile(`(?m)^EXPOSE .*\b8080\b`).MatchString(df) {
		t.Error("the Dockerfile does not EXPOSE 8080 and 9100")
	}
}

// The Dockerfile's build line, run as written (output redirected), makes
// a statically linked binary that serves the demo as uid 65532, as the
// image runs it.
func TestStaticBuild(t *testing.T) {
	m := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 .*go build .*)$`).FindStringSubmatch(dockerfile(t))
	if m == nil {
		t.Fatal("no `RUN CGO_ENABLED=0 … go build` line in the Dockerfile")
	}
	pub, err := os.MkdirTemp("", "preforkd-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	exe := filepath.Join(pub, "preforkd")
	line := strings.ReplaceAll(m[1], "/out/preforkd", exe)
	line = strings.ReplaceAll(line, "${VERSION}", "1.2.3-test")
	build := exec.Command("sh", "-c", line)
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}

	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a program interpreter: it is dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}

	if out, err := exec.Command(exe, "-version").CombinedOutput(); err != nil || !strings.Contains(string(out), "1.2.3-test") {
		t.Errorf("-version: %q, %v; want the version the build line set", out, err)
	}
	run := filepath.Join(pub, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	port, metrics := testutil.FreePort(t), testutil.FreePort(t)
	cmd := exec.Command(exe, "-workers=2", fmt.Sprintf("-listen=http=tcp://127.0.0.1:%d", port),
		fmt.Sprintf("-metrics=127.0.0.1:%d", metrics), "-control="+filepath.Join(run, "ctl.sock"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}, Setpgid: true}
	var log testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
	})
	c := &http.Client{Timeout: 5 * time.Second}
	testutil.WaitFor(t, 30*time.Second, "/healthz 200 from the static build", func() bool {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", metrics))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the demo: %v %v\n%s", resp, err, &log)
	}
	resp.Body.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, &log)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit within 30 s of SIGTERM\n%s", &log)
	}
}
