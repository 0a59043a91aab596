//go:build linux

package integration

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// startLoading starts the slowstate program, whose state is built only once
// the returned gate file exists, and waits until it answers /healthz with
// "loading".
func startLoading(t *testing.T) (*Master, string) {
	t.Helper()
	gate := filepath.Join(t.TempDir(), "gate")
	m := startMaster(t, Opts{Exe: buildTestdata(t, "slowstate"), Workers: 2, NoWait: true, Env: []string{"SLOWSTATE_GATE=" + gate}})
	c := &http.Client{Timeout: 2 * time.Second}
	var code int
	var body string
	testutil.WaitFor(t, 20*time.Second, "/healthz answering while the state loads", func() bool {
		var err error
		code, body, err = get(c, m.MetricsURL("/healthz"))
		return err == nil
	})
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "loading the shared state") {
		t.Fatalf("/healthz while loading: %d %q; want 503 loading the shared state", code, body)
	}
	if kids := testutil.Descendants(m.Cmd.Process.Pid); len(kids) != 0 {
		t.Fatalf("processes %v started before the state was loaded", kids)
	}
	return m, gate
}

// A master that takes long to load its state answers meanwhile: /healthz is
// 503 "loading", ctl status names the phase, /metrics has the master's own
// series. Once loaded, its workers start and serve the state.
func TestEndpointsAnswerWhileStateLoads(t *testing.T) {
	m, gate := startLoading(t)
	out, code := m.ctl(t, "status")
	if code != 0 || !strings.Contains(out, "loading the shared state") {
		t.Errorf("ctl status while loading: exit %d, %q", code, out)
	}
	if st, err := m.status(); err != nil || st.Phase != "loading" || len(st.Slots) != 0 {
		t.Errorf("status while loading: %+v, %v; want phase loading, no slot", st, err)
	}
	if out, code := m.ctl(t, "reload"); code == 0 || !strings.Contains(out, "still loading its shared state") {
		t.Errorf("ctl reload while loading: exit %d, %q; want an error saying the state loads", code, out)
	}
	_, metrics, err := get(&http.Client{Timeout: 5 * time.Second}, m.MetricsURL("/metrics"))
	if err != nil || !strings.Contains(metrics, "prefork_master_process_resident_memory_bytes") {
		t.Errorf("/metrics while loading: %v, has no master process series", err)
	}

	if err := os.WriteFile(gate, []byte("state-v1"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.WaitWorkers(2, 30*time.Second)
	if code, body, err := get(fresh(), m.URL("/")); err != nil || code != 200 || body != "state-v1" {
		t.Errorf("after the load: %d %q %v; want 200 state-v1", code, body, err)
	}
	if code, body, err := get(fresh(), m.MetricsURL("/healthz")); err != nil || code != 200 {
		t.Errorf("/healthz after the load: %d %q %v", code, body, err)
	}
}

// A stop asked for while the state loads ends the master once the load
// returns, before any worker starts, with exit status 0.
func TestStopWhileStateLoads(t *testing.T) {
	m, gate := startLoading(t)
	if out, code := m.ctl(t, "stop"); code != 0 {
		t.Fatalf("ctl stop while loading: exit %d, %q", code, out)
	}
	os.WriteFile(gate, []byte("x"), 0o600)
	if code := m.Process.Wait(20 * time.Second); code != 0 {
		t.Errorf("exit status %d after a stop while loading, want 0\n%s", code, m.Log)
	}
	if !strings.Contains(m.Log.String(), "stopped while loading the state") {
		t.Errorf("the log does not say the master stopped while loading\n%s", m.Log)
	}
	if strings.Contains(m.Log.String(), "worker started") || strings.Contains(m.Log.String(), "worker ready") {
		t.Errorf("workers were started after a stop during the load\n%s", m.Log)
	}
}
