//go:build linux

package integration

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// With -request-timeout, a demo request that sleeps past it gets 503 at
// the deadline; its goroutine's stack, naming the handler, is logged once
// with the method, path and elapsed time; and it is counted.
func TestRequestTimeout(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-request-timeout", "500ms"}})
	began := time.Now()
	code, body, err := get(fresh(), m.URL("/sleep?ms=4000"))
	took := time.Since(began)
	t.Logf("GET /sleep?ms=4000 with -request-timeout 500ms: %d %q after %v", code, body, took.Round(time.Millisecond))
	if err != nil || code != 503 || body != "request timed out\n" || took > 2500*time.Millisecond {
		t.Errorf("got %d %q %v after %v; want 503 at about 500 ms", code, body, err, took)
	}
	if code, _, err := get(fresh(), m.URL("/sleep?ms=10")); err != nil || code != 200 {
		t.Errorf("a request within the deadline: %d %v", code, err)
	}
	testutil.WaitFor(t, 10*time.Second, "the logged stack", func() bool {
		return len(logLines(m.Log.String(), "request timed out", "path=/sleep")) > 0
	})
	line := logLines(m.Log.String(), "request timed out", "path=/sleep")[0]
	for _, want := range []string{"method=GET", "elapsed=", "answered_503=true", "demo.(*demo).sleep"} {
		if !strings.Contains(line, want) {
			t.Errorf("the timeout's log line lacks %q: %s", want, line)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "the timeout counted in http_request_timeouts_total", func() bool {
		_, body, err := get(fresh(), m.MetricsURL("/metrics"))
		total := 0.0
		for _, l := range strings.Split(body, "\n") {
			if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[0], "http_request_timeouts_total{") {
				v, _ := strconv.ParseFloat(f[1], 64)
				total += v
			}
		}
		return err == nil && total == 1
	})
}

// A worker with more than 3 requests stuck past the deadline is replaced
// gracefully: its replacement is ready first, and no other request fails.
func TestStuckRequestsRecycleWorker(t *testing.T) {
	m := startMaster(t, Opts{Workers: 1, Args: []string{"-request-timeout", "300ms", "-grace", "3s"}})
	old := m.WaitWorkers(1, 20*time.Second).Slots[0].PID
	load := startMixed(t, m)
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, _ = get(fresh(), m.URL("/sleep?ms=8000"))
		}()
	}
	wg.Wait()
	var st Status
	testutil.WaitFor(t, 20*time.Second, "the stuck worker replaced", func() bool {
		var err error
		st, err = m.status()
		return err == nil && len(st.Slots) == 1 && st.Slots[0].State == "ready" && st.Slots[0].PID != old
	})
	time.Sleep(500 * time.Millisecond)
	ok, connErrs, non2xx, errs := load.stop()
	t.Logf("stuck requests answered %v; %d other requests, %d failed", codes, ok, connErrs+non2xx)
	for i, c := range codes {
		if c != 503 {
			t.Errorf("stuck request %d: %d, want 503", i, c)
		}
	}
	if connErrs+non2xx != 0 {
		t.Errorf("%d other requests failed: %v", connErrs+non2xx, errs)
	}
	if l := logLines(m.Log.String(), "asking to be replaced"); len(l) != 1 {
		t.Errorf("the worker asked to be replaced %d times, want once", len(l))
	}
}
