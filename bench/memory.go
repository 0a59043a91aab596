package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

const mib = 1 << 20

// memRow is sections 4 and 5 for one state size.
type memRow struct {
	size      int64
	pss       []uint64 // per worker, from the control socket (smaps_rollup)
	pssShmem  []uint64
	touchReqs int // GET /state requests until every worker had answered
	starts    []time.Duration
	respawns  []time.Duration
	exits     []time.Duration
}

func (r memRow) total() uint64 {
	var t uint64
	for _, v := range r.pss {
		t += v
	}
	return t
}

// memResult is sections 4 and 5.
type memResult struct {
	workers int
	kills   int
	rows    []memRow // the first is the 1 MiB ("idle") baseline
	pages   *pageResult
}

// writeRandom writes size pseudo-random bytes (ChaCha8, so that nothing
// compresses or dedupes) to path.
func writeRandom(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{'p', 'r', 'e', 'f', 'o', 'r', 'k', 'd'})
	buf := make([]byte, 4*mib)
	w := bufio.NewWriterSize(f, 0)
	for left := size; left > 0; left -= int64(len(buf)) {
		n := min(int64(len(buf)), left)
		rng.Read(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// touchAll requests /state on fresh connections (4 at a time) until every
// current worker has answered once, so that each has read every byte of
// the region. Bounded: 2,000 requests or 3 minutes.
func touchAll(m *Master) (int, error) {
	st, err := m.Status()
	if err != nil {
		return 0, err
	}
	want := map[int]bool{}
	for _, s := range st.Slots {
		want[s.PID] = true
	}
	var mu sync.Mutex
	seen, n := map[int]bool{}, 0
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for p := range want {
			if !seen[p] {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(3 * time.Minute)
	var wg sync.WaitGroup
	var firstErr error
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
			for !done() && time.Now().Before(deadline) {
				mu.Lock()
				if n >= 2000 {
					mu.Unlock()
					return
				}
				n++
				mu.Unlock()
				resp, err := c.Get(m.URL("/state"))
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if i := strings.Index(string(body), " pid="); i >= 0 {
					f := strings.Fields(string(body[i+5:]))
					if pid, err := strconv.Atoi(f[0]); err == nil {
						mu.Lock()
						seen[pid] = true
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return n, firstErr
	}
	if !done() {
		return n, fmt.Errorf("/state: not every worker answered in %d requests", n)
	}
	return n, nil
}

// runMemory starts, for each state size, a master with 4 workers over a
// file of random bytes, has every worker read all of it, reads the
// workers' PSS, then kills workers round robin and reads their start times.
func (b *bench) runMemory() (*memResult, error) {
	defer b.p.killAll()
	res := &memResult{workers: 4, kills: 5}
	sizes := []int64{1 * mib, 64 * mib, 256 * mib, 1024 * mib}
	if b.quick {
		sizes, res.kills = []int64{1 * mib, 64 * mib}, 3
	}
	for _, size := range sizes {
		row, err := b.memoryOne(size, res.workers, res.kills)
		if err != nil {
			return nil, err
		}
		res.rows = append(res.rows, row)
	}
	pages, err := b.runPageModes()
	if err != nil {
		return nil, err
	}
	res.pages = pages
	return res, nil
}

func (b *bench) memoryOne(size int64, workers, kills int) (memRow, error) {
	row := memRow{size: size}
	path := filepath.Join(b.tmp, fmt.Sprintf("state-%dMiB.bin", size/mib))
	if err := writeRandom(path, size); err != nil {
		return row, err
	}
	defer os.Remove(path)
	m, err := startMaster(b.p, b.tmp, b.bins["v1"], workers, "-state", path, "-stable-period", "200ms")
	if err != nil {
		return row, err
	}
	defer m.Stop()
	if row.touchReqs, err = touchAll(m); err != nil {
		return row, err
	}
	st, err := m.Status()
	if err != nil {
		return row, err
	}
	for _, s := range st.Slots {
		if s.Memory == nil {
			return row, fmt.Errorf("status: no memory for slot %d", s.Slot)
		}
		row.pss = append(row.pss, s.Memory.PSS)
		row.pssShmem = append(row.pssShmem, s.Memory.PSSShmem)
	}
	for i := 0; i < kills; i++ {
		ev, _, err := b.kill(m, i%workers, 300*time.Millisecond)
		if err != nil {
			return row, err
		}
		row.starts = append(row.starts, ev.start)
		row.respawns = append(row.respawns, ev.respawn)
		row.exits = append(row.exits, ev.exit)
	}
	b.logf("  %d MiB: workers' PSS %.1f MiB after %d /state requests; start→ready median %v", size/mib,
		float64(row.total())/mib, row.touchReqs, medianD(row.starts))
	return row, nil
}

func (r *report) memory(m *memResult) {
	r.p("\n## 4. Memory\n\n")
	idle := m.rows[0]
	r.p("For each state size S, a file of S random bytes is the `-state` of a master with %d workers; every worker answers `GET /state` (which reads every byte of the region) on fresh connections until all %d pids have answered; then the workers' PSS is summed from the control socket's status (`pss_bytes`, read from `/proc/<pid>/smaps_rollup` at the request). ",
		m.workers, m.workers)
	r.p("**Naive** (N private copies) and **ideal** (one shared copy) are computed, not measured: naive = N×S + idle, ideal = S + idle, where idle = %s is the total PSS of the same %d workers over a %s state. ",
		fmtMiB(idle.total()), m.workers, fmtSize(idle.size))
	r.p("When the %d workers are the only ones mapping the region, their Pss_Shmem adds up to S (the Σ column).\n\n", m.workers)
	r.p("| S | workers' total PSS | per worker: PSS (of which Pss_Shmem) | Σ Pss_Shmem | naive N×S + idle (computed) | ideal S + idle (computed) | ÷ ideal | |\n|---|---|---|---|---|---|---|---|\n")
	for _, row := range m.rows[1:] {
		ideal := uint64(row.size) + idle.total()
		naive := uint64(m.workers)*uint64(row.size) + idle.total()
		rat := ratio(float64(row.total()), float64(ideal))
		var per []string
		for i := range row.pss {
			per = append(per, fmt.Sprintf("%.1f (%.1f)", float64(row.pss[i])/mib, float64(row.pssShmem[i])/mib))
		}
		v := r.verdict(goal{what: fmt.Sprintf("§4 workers' PSS over %s ÷ ideal", fmtSize(row.size)), figure: fmt.Sprintf("%.3f×", rat), target: "≤ 1.10×", met: rat <= 1.10,
			why: "more than the one shared copy plus idle workers: some pages of the region are counted privately."})
		var shm uint64
		for _, v := range row.pssShmem {
			shm += v
		}
		r.p("| %s | %s | %s MiB | %s | %s | %s | %.3f× | %s |\n", fmtSize(row.size), fmtMiB(row.total()), strings.Join(per, ", "), fmtMiB(shm), fmtMiB(naive), fmtMiB(ideal), rat, v)
	}
	r.p("\n**Goal:** within 10%% of ideal. **Peer:** Python workers share only what copy-on-write leaves untouched; `gc.freeze()` before fork cut the total PSS of 24 workers from 1791 to 1237 MB, still far from one copy. fasthttp prefork \"prevents the use of any global state\": each child would load its own copy, the naive column.\n")
}

func (r *report) startTimes(m *memResult) {
	r.p("\n## 5. Worker start time vs state size\n\n")
	r.p("On the same masters, after the memory figures: %d SIGKILLs per size (round robin over the %d slots, each victim up ≥ 300 ms, no load). ", m.kills, m.workers)
	r.p("Start → ready is the master log's `start_time` of each replacement (its start to its READY=1); respawn-to-serving is from the SIGKILL to that log line, as in §3.\n\n")
	r.p("The victim's exit is from the SIGKILL until its pid is gone (polled every 0.5 ms): every thread has exited and the kernel has torn its memory down, and the master has reaped it — the master cannot know of the death sooner.\n\n")
	r.p("| S | start → ready, median | min … max | respawn-to-serving, median | victim's exit, median | start median ÷ %s |\n|---|---|---|---|---|---|\n", fmtSize(m.rows[0].size))
	base := medianD(m.rows[0].starts)
	var last float64
	for _, row := range m.rows {
		s := append([]time.Duration(nil), row.starts...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		last = ratio(float64(medianD(row.starts)), float64(base))
		r.p("| %s | %s | %s … %s | %s | %s | %.2f× |\n", fmtSize(row.size), fmtD(medianD(row.starts)), fmtD(s[0]), fmtD(s[len(s)-1]), fmtD(medianD(row.respawns)), fmtD(medianD(row.exits)), last)
	}
	big := m.rows[len(m.rows)-1]
	r.p("\n**Goal:** flat within 1.5× from %s to %s: %s\n", fmtSize(m.rows[0].size), fmtSize(big.size),
		r.verdict(goal{what: fmt.Sprintf("§5 worker start → ready, %s ÷ %s (medians)", fmtSize(big.size), fmtSize(m.rows[0].size)), figure: fmt.Sprintf("%.2f×", last), target: "≤ 1.5×", met: last <= 1.5,
			why: "the start grows with the state: something in a worker's start touches the region in proportion to its size."}))
	small := m.rows[0]
	if gr := ratio(float64(medianD(big.respawns)), float64(medianD(small.respawns))); gr > 1.5 {
		r.p("\nThe start is flat, but respawn-to-serving is not: %s over %s against %s over %s (%.1f×). ", fmtD(medianD(big.respawns)), fmtSize(big.size), fmtD(medianD(small.respawns)), fmtSize(small.size), gr)
		r.p("The victim's exit accounts for %s of it (%s over %s): a worker that read the whole region has a page-table entry for every 4 KiB page of it, and the kernel clears them all when the process dies, before the master can reap it (SIGCHLD comes after the teardown). ",
			fmtD(medianD(big.exits)), fmtD(medianD(small.exits)), fmtSize(small.size))
		r.p("It costs the requests nothing (the other workers keep accepting), but it delays the return to full capacity after a worker that touched a large state dies. What closes it: the region in huge pages (a `MFD_HUGETLB` memfd, or transparent huge pages on shmem), 512× fewer entries to clear, which the master uses where the host allows: see \"Huge pages\" below. The sizes above ran on this host's settings.\n")
	}
	r.p("\n**Peer:** a prefork server without shared state (fasthttp prefork, or Gunicorn without `--preload`) loads or parses its data in every child, so its start grows with S; here a worker maps the sealed region and reads nothing at start.\n")
	if m.pages != nil {
		r.pageModes(m.pages)
	}
}
