//go:build linux

package aggregate

import (
	"testing"
	"time"
)

// A family whose bytes did not change since the worker's previous frame is
// taken from it, not decoded again; a changed one is decoded; the exported
// values follow the worker either way.
func TestUnchangedFamiliesReused(t *testing.T) {
	agg := newAggregator(t, 5*time.Second)
	m := newTestMetrics()
	m.c.Add(1)
	m.g.Set(2)
	m.h.Observe(0.5)
	startWorker(t, agg, 0, 4242, m.reg)

	famOf := func(name string) *famSnap {
		t.Helper()
		agg.mu.Lock()
		w := agg.workers[4242]
		agg.mu.Unlock()
		for _, fs := range w.snapshot() {
			if fs.mf.GetName() == name {
				return &fs
			}
		}
		t.Fatalf("family %s not in the snapshot", name)
		return nil
	}
	gather(t, agg)
	c1, g1, h1 := famOf("jobs_total").mf, famOf("queue_length").mf, famOf("job_duration_seconds").mf

	m.c.Add(4) // only the counter changes
	mfs := gather(t, agg)
	if v := value(t, mfs, "jobs_total", "worker", "0"); v != 5 {
		t.Errorf("jobs_total = %v, want 5", v)
	}
	if v := value(t, mfs, "queue_length", "worker", "0"); v != 2 {
		t.Errorf("queue_length = %v, want 2", v)
	}
	if famOf("jobs_total").mf == c1 {
		t.Error("the changed counter family was not decoded again")
	}
	if famOf("queue_length").mf != g1 || famOf("job_duration_seconds").mf != h1 {
		t.Error("unchanged families were decoded again")
	}

	m.g.Set(3)
	mfs = gather(t, agg)
	if v := value(t, mfs, "queue_length", "worker", "0"); v != 3 {
		t.Errorf("queue_length = %v, want 3", v)
	}
	if v := value(t, mfs, "jobs_total", "worker", "0"); v != 5 {
		t.Errorf("jobs_total = %v, want 5", v)
	}
}
