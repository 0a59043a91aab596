//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
	"golang.org/x/sys/unix"
)

// shWorker is an external worker in sh: it runs script, then stays
// (readiness comes from -ready-delay).
func shWorker(script string) []string {
	return []string{"sh", "-c", script + "; while :; do sleep 0.1; done"}
}

// Every line an external worker writes, to stdout or stderr, reaches the
// master's stream labelled with its slot, pid and generation.
func TestLabelledOutputText(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-ready-delay", "100ms"},
		Command: shWorker(`echo "out-line from slot $PREFORK_WORKER"; echo "err-line" >&2`)})
	st := m.WaitWorkers(2, 20*time.Second)
	for _, s := range st.Slots {
		for _, want := range []string{
			fmt.Sprintf("slot=%d pid=%d generation=1 stream=stdout | out-line from slot %d", s.Slot, s.PID, s.Slot),
			fmt.Sprintf("slot=%d pid=%d generation=1 stream=stderr | err-line", s.Slot, s.PID),
		} {
			testutil.WaitFor(t, 10*time.Second, want, func() bool { return strings.Contains(m.Log.String(), want) })
		}
	}
}

// With -log-format json every forwarded line is a JSON object with the
// labels; a worker's own JSON object keeps its fields.
func TestLabelledOutputJSON(t *testing.T) {
	m := startMaster(t, Opts{Workers: 1, Args: []string{"-ready-delay", "100ms", "-log-format", "json"},
		Command: shWorker(`echo '{"level":"WARN","msg":"own-json","k":1}' >&2; echo plain-line`)})
	st := m.WaitWorkers(1, 20*time.Second)
	pid := st.Slots[0].PID
	found := map[string]bool{}
	testutil.WaitFor(t, 10*time.Second, "both lines, as JSON", func() bool {
		for _, line := range strings.Split(m.Log.String(), "\n") {
			var v map[string]any
			if json.Unmarshal([]byte(line), &v) != nil || v["pid"] != float64(pid) {
				continue
			}
			if v["slot"] != 0.0 || v["generation"] != 1.0 {
				t.Fatalf("labels wrong: %s", line)
			}
			switch {
			case v["msg"] == "own-json" && v["k"] == 1.0 && v["level"] == "WARN" && v["stream"] == "stderr":
				found["own"] = true
			case v["msg"] == "plain-line" && v["stream"] == "stdout":
				found["plain"] = true
			}
		}
		return found["own"] && found["plain"]
	})
}

// A Go worker's own log lines are labelled too (here its drain, when
// scaled away), and a last line without a newline is forwarded when its
// worker exits.
func TestLabelledOutputGoAndPartialLine(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2})
	st := m.WaitWorkers(2, 20*time.Second)
	m.Signal(unix.SIGTTOU)
	want := fmt.Sprintf("slot=1 pid=%d generation=1 stream=stderr | ", st.Slots[1].PID)
	testutil.WaitFor(t, 20*time.Second, "the scaled-away Go worker's labelled drain line", func() bool {
		return len(logLines(m.Log.String(), want, "draining")) > 0
	})

	p := startMaster(t, Opts{Workers: 1, Args: []string{"-ready-delay", "100ms"},
		Command: []string{"sh", "-c", "printf partial-no-newline >&2; sleep 0.5"}})
	testutil.WaitFor(t, 20*time.Second, "the partial last line", func() bool {
		return len(logLines(p.Log.String(), "stream=stderr | partial-no-newline")) > 0
	})
}

// The old generation's output keeps its labels after an upgrade: what its
// workers write as they drain is forwarded by the old master.
func TestLabelledOutputAcrossUpgrade(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-ready-delay", "100ms"},
		Command: shWorker(`trap 'echo bye-from-the-old-generation >&2; exit 0' TERM; echo hello >&2`)})
	old := m.WaitWorkers(2, 20*time.Second)
	m.Upgrade("v2", 2)
	for _, s := range old.Slots {
		want := fmt.Sprintf("slot=%d pid=%d generation=1 stream=stderr | bye-from-the-old-generation", s.Slot, s.PID)
		testutil.WaitFor(t, 20*time.Second, want, func() bool { return strings.Contains(m.Log.String(), want) })
	}
}

// A worker flooding its stderr does not slow the supervision of the
// others: a killed worker is replaced within its usual bound. (The master's
// own stderr goes to /dev/null here, as fast a reader as there is.)
func TestOutputFloodDoesNotSlowSupervision(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-ready-delay", "100ms"},
		Wrapper: []string{"sh", "-c", `exec "$0" "$@" 2>/dev/null`},
		Command: []string{"sh", "-c", `if [ "$PREFORK_WORKER" = 0 ]; then exec timeout 60 yes flood-flood-flood >&2; fi; while :; do sleep 0.1; done`}})
	m.WaitWorkers(2, 20*time.Second)
	var worst time.Duration
	for i := 0; i < 5; i++ {
		st := m.WaitWorkers(2, 20*time.Second)
		victim := st.Slots[1].PID
		began := time.Now()
		unix.Kill(victim, unix.SIGKILL)
		testutil.WaitFor(t, 20*time.Second, "slot 1's replacement", func() bool {
			s, err := m.status()
			return err == nil && len(s.Slots) == 2 && s.Slots[1].State == "ready" && s.Slots[1].PID != victim
		})
		worst = max(worst, time.Since(began))
		time.Sleep(1200 * time.Millisecond) // past -stable-period: replaced at once
	}
	v, _ := m.masterGauge(`prefork_worker_output_dropped_bytes_total{stream="stderr"}`)
	t.Logf("slowest replacement of 5 beside a flooding worker: %v (ready-delay 100ms); %.0f bytes dropped", worst, v)
	if worst > 3*time.Second {
		t.Errorf("a replacement took %v beside a flooding worker", worst)
	}
}

// A Go worker's own JSON log line (-log-format json reaches the workers
// too) keeps its fields when labelled, and is not given a second pid.
func TestLabelledOutputGoJSON(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-log-format", "json"}})
	st := m.WaitWorkers(2, 20*time.Second)
	m.Signal(unix.SIGTTOU)
	pid := st.Slots[1].PID
	testutil.WaitFor(t, 20*time.Second, "the scaled-away Go worker's drain line, as labelled JSON", func() bool {
		for _, line := range strings.Split(m.Log.String(), "\n") {
			var v map[string]any
			if json.Unmarshal([]byte(line), &v) != nil || v["msg"] != "draining" || v["pid"] != float64(pid) {
				continue
			}
			if v["stream"] != "stderr" || v["slot"] != 1.0 || v["generation"] != 1.0 || strings.Count(line, `"pid"`) != 1 {
				t.Fatalf("drain line labelled wrong: %s", line)
			}
			return true
		}
		return false
	})
}
