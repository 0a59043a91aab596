package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
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
