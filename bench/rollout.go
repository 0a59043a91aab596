package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/preforkd/preforkd/internal/procfs"
	"github.com/preforkd/preforkd/internal/testutil"
)

// rolloutMode is one way to upgrade, with the flags that choose it.
type rolloutMode struct {
	name string
	args []string
}

// rolloutRow is one mode's turns.
type rolloutRow struct {
	mode      rolloutMode
	took      []time.Duration // SIGHUP → the new master's pid in the pid file (the new generation serves)
	peakProcs []int           // worker processes at once, both generations
	peakPSS   []uint64        // the sum of every worker's PSS at its peak
	requests  []int
	failed    []int
}

// rollout is section 10: an upgrade of 4 workers under a paced load, all
// at once, with -upgrade-surge 1, with a canary, and with both; its time
// and its peak worker count and memory.
type rollout struct {
	workers int
	canary  time.Duration
	rows    []*rolloutRow
}

func (b *bench) runRollout() (*rollout, error) {
	const workers = 4
	canary := 2 * time.Second
	turns := 3
	if b.quick {
		canary, turns = time.Second, 1
	}
	cs := canary.String()
	res := &rollout{workers: workers, canary: canary}
	for _, m := range []rolloutMode{
		{"all at once", nil},
		{"-upgrade-surge 1", []string{"-upgrade-surge", "1"}},
		{"-canary " + cs, []string{"-canary", cs}},
		{"-canary " + cs + " -upgrade-surge 1", []string{"-canary", cs, "-upgrade-surge", "1"}},
	} {
		res.rows = append(res.rows, &rolloutRow{mode: m})
	}
	for turn := 0; turn < turns; turn++ {
		for i := range res.rows {
			row := res.rows[i]
			if turn%2 == 1 { // alternate the order
				row = res.rows[len(res.rows)-1-i]
			}
			if err := b.rolloutOne(row, workers); err != nil {
				return nil, fmt.Errorf("%s: %w", row.mode.name, err)
			}
		}
	}
	return res, nil
}

func (b *bench) rolloutOne(row *rolloutRow, workers int) error {
	m, err := startMaster(b.p, b.tmp, b.bins["v1"], workers, row.mode.args...)
	if err != nil {
		return err
	}
	defer m.Stop()
	l := startLoad(loadConfig{Addr: m.Addr(), Path: "/", KeepAlive: 4, Fresh: 2, Rate: 200, Max: 2 * time.Minute, MaxRequests: 200 * 120})
	var (
		wg    sync.WaitGroup
		stop  = make(chan struct{})
		procs int
		pss   uint64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				n, sum := workerMemory()
				procs, pss = max(procs, n), max(pss, sum)
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	ev, _, err := b.upgrade(m, "v2")
	close(stop)
	wg.Wait()
	samples := l.finish()
	if err != nil {
		return err
	}
	failed := 0
	for _, s := range samples {
		if !s.ok {
			failed++
		}
	}
	row.took = append(row.took, ev.pidFile)
	row.peakProcs = append(row.peakProcs, procs)
	row.peakPSS = append(row.peakPSS, pss)
	row.requests = append(row.requests, len(samples))
	row.failed = append(row.failed, failed)
	b.logf("  %s: %v, peak %d workers, %.1f MiB PSS, %d of %d failed", row.mode.name, ev.pidFile.Round(time.Millisecond), procs, float64(pss)/(1<<20), failed, len(samples))
	return nil
}

// workerMemory counts the worker processes below the bench (either
// generation: their environment has PREFORK_WORKER) and sums their PSS.
func workerMemory() (n int, pss uint64) {
	for _, pid := range testutil.Descendants(os.Getpid()) {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !strings.Contains(string(env), "PREFORK_WORKER=") {
			continue
		}
		mem, err := procfs.ReadSmapsRollup(pid)
		if err != nil {
			continue
		}
		n++
		pss += mem.Pss
	}
	return n, pss
}

func (r *report) rollout(ro *rollout) {
	r.p("\n## 10. Upgrades with a canary and with surge control\n\n")
	r.p("An upgrade of %d workers (the demo) to a good build, under a paced load (4 keep-alive and 2 fresh-connection clients at 200 req/s each), "+
		"in each mode; %d turns, the modes' order alternated. *Time* is SIGHUP → the new master's pid in the pid file (its generation all serving); "+
		"the canary's window (%v) is in it. *Peak* is the most worker processes of both generations at once, and the largest sum of their PSS "+
		"(`/proc/<pid>/smaps_rollup`), sampled every 20 ms. Medians, with each turn's value after them.\n\n",
		ro.workers, len(ro.rows[0].took), ro.canary)
	r.p("| mode | time | peak worker processes | peak PSS of all workers | failed requests |\n|---|---|---|---|---|\n")
	for _, row := range ro.rows {
		var pss []float64
		for _, v := range row.peakPSS {
			pss = append(pss, float64(v)/(1<<20))
		}
		var procs, failed []float64
		for i := range row.peakProcs {
			procs = append(procs, float64(row.peakProcs[i]))
			failed = append(failed, float64(row.failed[i]))
		}
		total := 0
		for _, n := range row.requests {
			total += n
		}
		r.p("| `%s` | %v (%s) | %.0f (%s) | %.1f MiB (%s) | %.0f of %d |\n", row.mode.name,
			medianD(row.took).Round(time.Millisecond), joinD(row.took), medianF(procs), joinF(procs, "%.0f"),
			medianF(pss), joinF(pss, "%.1f"), sumF(failed), total)
	}
	r.p("\nA surge of 1 holds the workers at %d + 1 and their memory near one generation's, at the cost of starting the new workers in steps; "+
		"a canary adds its window to the upgrade and runs %d + 1 workers meanwhile.\n", ro.workers, ro.workers)
}

func joinD(d []time.Duration) string {
	s := make([]string, len(d))
	for i, v := range d {
		s[i] = v.Round(time.Millisecond).String()
	}
	return strings.Join(s, ", ")
}

func joinF(v []float64, format string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, ", ")
}

func sumF(v []float64) float64 {
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t
}
