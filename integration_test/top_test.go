//go:build linux

package integration

import (
	"encoding/json"
	"fmt"

	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// tmux runs a tmux command on the test's own server (socket).
func tmux(t *testing.T, sock string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
	return string(out), err
}

// preforkd ctl top, in a real terminal (a tmux pane): it draws every slot,
// updates every interval (requests per second appear under load), and q
// ends it with the terminal restored (the shell's next line is visible,
// the table is gone).
func TestCtlTopInTerminal(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux not found: install Debian's tmux (.ci/run does)")
	}
	m := startMaster(t, Opts{Workers: 2})
	st := m.WaitWorkers(2, 20*time.Second)
	load := startLoad(t, m.URL("/"), 2, KeepAlive)
	defer load.Stop()
	sock := filepath.Join(t.TempDir(), "tmux.sock")
	t.Cleanup(func() { tmux(t, sock, "kill-server") })
	cmd := fmt.Sprintf("%s ctl -control %s top -interval 500ms; echo top-exited-$?; sleep 60", bin("v1"), m.Control)
	if out, err := tmux(t, sock, "new-session", "-d", "-s", "top", "-x", "160", "-y", "30", cmd); err != nil {
		t.Fatalf("tmux: %v: %s", err, out)
	}
	capture := func() string { out, _ := tmux(t, sock, "capture-pane", "-p", "-t", "top"); return out }
	var screen string
	deadline := time.Now().Add(20 * time.Second)
	for {
		screen = capture()
		rows, rated := 0, 0
		for _, s := range st.Slots {
			if mm := regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+%d\s+ready\s+\S+\s+(\S+)\s`, s.Slot, s.PID)).FindStringSubmatch(screen); mm != nil {
				rows++
				if n, err := strconv.Atoi(mm[1]); err == nil && n > 0 {
					rated++
				}
			}
		}
		if rows == 2 && rated > 0 && strings.Contains(screen, "master pid") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ctl top did not draw both slots with a request rate in 20 s:\n%s", screen)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("ctl top:\n%s", strings.TrimRight(screen, "\n"))
	first := screen
	testutil.WaitFor(t, 10*time.Second, "the screen to update", func() bool { screen = capture(); return screen != first })
	if out, err := tmux(t, sock, "send-keys", "-t", "top", "q"); err != nil {
		t.Fatalf("send-keys: %v: %s", err, out)
	}
	testutil.WaitFor(t, 10*time.Second, "ctl top to exit on q", func() bool {
		screen = capture()
		return strings.Contains(screen, "top-exited-0")
	})
	if strings.Contains(screen, "REQ/S") {
		t.Errorf("the table is still on the screen after q: the terminal was not restored\n%s", screen)
	}
}

// ctl top -json streams one object per interval with every slot.
func TestCtlTopJSON(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2})
	m.WaitWorkers(2, 20*time.Second)
	load := startLoad(t, m.URL("/"), 2, KeepAlive)
	defer load.Stop()
	out, code := m.ctl(t, "top", "-json", "-n", "3", "-interval", "300ms")
	if code != 0 {
		t.Fatalf("ctl top -json: exit %d: %s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), out)
	}
	var last struct {
		Generation int `json:"generation"`
		Slots      []struct {
			PID       int      `json:"pid"`
			ReqPerSec *float64 `json:"requests_per_second"`
		} `json:"slots"`
	}
	if err := json.Unmarshal([]byte(lines[2]), &last); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[2])
	}
	if last.Generation != 1 || len(last.Slots) != 2 {
		t.Fatalf("last frame %+v", last)
	}
	total := 0.0
	for _, s := range last.Slots {
		if s.ReqPerSec != nil {
			total += *s.ReqPerSec
		}
	}
	if total <= 0 {
		t.Errorf("no request rate under load: %s", lines[2])
	}
}
