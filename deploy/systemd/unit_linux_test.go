//go:build linux

package systemd

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// shippedUnit is preforkd.service with its ExecStart pointed at the test's
// build and at free loopback ports; every other line is as shipped.
func shippedUnit(t *testing.T, port, metrics int) string {
	t.Helper()
	b, err := os.ReadFile("preforkd.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, r := range [][2]string{
		{"/usr/local/bin/preforkd ", "/opt/preforkd/preforkd "},
		{"http=tcp://0.0.0.0:8080", fmt.Sprintf("http=tcp://127.0.0.1:%d", port)},
		{"-metrics 127.0.0.1:9100", fmt.Sprintf("-metrics 127.0.0.1:%d", metrics)},
	} {
		if !strings.Contains(unit, r[0]) {
			t.Fatalf("preforkd.service has no %q to replace: update the test with the unit", r[0])
		}
		unit = strings.Replace(unit, r[0], r[1], 1)
	}
	return unit
}

// The shipped unit under a real systemd: start, two reloads under load
// with no failed request, systemd supervising the newest master (its death
// noticed, Restart= starting a new one), and a stop that lets the request
// in flight finish: Result=success, nothing left, the new masters' lines in
// the unit's journal.
func TestShippedUnitUnderSystemd(t *testing.T) {
	share := t.TempDir()
	out, err := exec.Command("go", "build", "-C", "../..", "-o", filepath.Join(share, "preforkd"), "./cmd/preforkd").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if err := os.Chmod(share, 0o755); err != nil {
		t.Fatal(err)
	}
	port, metrics := testutil.FreePort(t), testutil.FreePort(t)
	units := t.TempDir()
	writeFile(t, units, "preforkd.service", shippedUnit(t, port, metrics))
	for _, u := range []string{"preforkd.service", "preforkd-activated.service", "preforkd.socket"} {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, share, filepath.Join("units", u), string(b))
	}
	writeFile(t, share, "units/bad.service", "[Service]\nExecStart=/usr/local/bin/preforkd\nBogusKey=1\n")
	m := boot(t, units, share)
	if out, err := m.try("systemd-analyze", "verify", "/opt/preforkd/units/preforkd.service",
		"/opt/preforkd/units/preforkd-activated.service", "/opt/preforkd/units/preforkd.socket"); err != nil || out != "" {
		t.Errorf("systemd-analyze verify of the shipped units: %v\n%s", err, out)
	}
	if out, _ := m.try("systemd-analyze", "verify", "/opt/preforkd/units/bad.service"); !strings.Contains(out, "BogusKey") {
		t.Errorf("systemd-analyze verify does not report an unknown key (%q): the check above proves nothing", out)
	}

	began := time.Now()
	m.run("systemctl", "start", "preforkd")
	t.Logf("systemctl start took %v", time.Since(began).Round(time.Millisecond))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	mainPID := m.prop("preforkd", "MainPID")

	var clients []testutil.LoadClient
	for i := 0; i < 4; i++ {
		clients = append(clients, testutil.LoadClient{URL: url, KeepAlive: i%2 == 1, Pause: 2 * time.Millisecond})
	}
	l := testutil.StartHTTPLoad(clients...)
	for gen := 2; gen <= 3; gen++ {
		began := time.Now()
		m.run("systemctl", "reload", "preforkd")
		// reload returns once SIGHUP is sent; the hand-over follows.
		prev := mainPID
		testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("MainPID to change from %s after reload %d", prev, gen-1), func() bool {
			mainPID = m.prop("preforkd", "MainPID")
			return mainPID != prev && mainPID != "0" && m.prop("preforkd", "ActiveState") == "active"
		})
		t.Logf("reload %d: MainPID %s → %s in %v", gen-1, prev, mainPID, time.Since(began).Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond)
	}
	ok, failed := l.End()
	t.Logf("%d requests across two reloads, failures %v", ok, failed)
	if len(failed) > 0 || ok < 100 {
		t.Errorf("across two reloads: %d ok, failures %v; want 0 failed", ok, failed)
	}
	if j := m.run("journalctl", "-u", "preforkd", "-o", "cat", "--no-pager"); !strings.Contains(j, "generation=3") {
		t.Errorf("the unit's journal has no line of the third generation's master:\n%s", j)
	}

	// systemd supervises the newest master: its death is noticed and
	// Restart=on-failure starts a new one.
	m.run("systemctl", "kill", "--kill-who=main", "-s", "KILL", "preforkd")
	testutil.WaitFor(t, 60*time.Second, "systemd to restart the killed master", func() bool {
		return m.prop("preforkd", "NRestarts") == "1" && m.prop("preforkd", "ActiveState") == "active"
	})
	testutil.WaitFor(t, 30*time.Second, "the restarted master to serve", func() bool {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	prev := m.prop("preforkd", "MainPID") // before the reload: the hand-over may be done by the time it returns
	m.run("systemctl", "reload", "preforkd")
	testutil.WaitFor(t, 60*time.Second, "MainPID to change after a reload of the restarted service", func() bool {
		p := m.prop("preforkd", "MainPID")
		return p != prev && p != "0"
	})

	// A stop lets the request in flight finish.
	inflight := make(chan string, 1)
	go func() {
		c := &http.Client{Timeout: 30 * time.Second}
		resp, err := c.Get(url + "sleep?ms=3000")
		if err != nil {
			inflight <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	time.Sleep(time.Second)
	m.run("systemctl", "stop", "preforkd")
	if got := <-inflight; !strings.HasPrefix(got, "200 ") || !strings.Contains(got, "slept=3000ms") {
		t.Errorf("the request in flight at the stop got %q; want 200 slept=3000ms", got)
	}
	if r, s := m.prop("preforkd", "Result"), m.prop("preforkd", "ActiveState"); r != "success" || s != "inactive" {
		t.Errorf("after the stop: Result=%s ActiveState=%s; want success, inactive\n%s", r, s,
			m.run("journalctl", "-u", "preforkd", "-o", "short-precise", "--no-pager"))
	}
	if left, _ := m.try("pgrep", "-a", "-f", "/opt/preforkd/preforkd"); left != "" {
		t.Errorf("processes left after the stop:\n%s", left)
	}
	if j := m.run("journalctl", "-u", "preforkd", "-o", "cat", "--no-pager"); strings.Contains(j, "which is not our child") {
		t.Errorf("systemd supervised a master that was not its child:\n%s", j)
	}
}

// Every shipped service passes -pidfile with the path of its PIDFile=: the
// hand-over to a new master relies on systemd re-reading that file.
func TestUnitsPIDFileMatchesFlag(t *testing.T) {
	for _, u := range []string{"preforkd.service", "preforkd-activated.service"} {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		var pidFile, flag string
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PIDFile="); ok {
				pidFile = v
			}
			if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
				f := strings.Fields(v)
				for i := range f[:len(f)-1] {
					if f[i] == "-pidfile" {
						flag = f[i+1]
					}
				}
			}
		}
		if pidFile == "" || pidFile != flag {
			t.Errorf("%s: PIDFile=%q, -pidfile %q: they must be set and equal", u, pidFile, flag)
		}
	}
}
