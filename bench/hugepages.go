package main

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/preforkd/preforkd/internal/procfs"
	"github.com/preforkd/preforkd/internal/testutil"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/preforkd/preforkd/state"
)

// The host settings the page-mode comparison changes (and puts back).
const (
	nrHugepagesPath  = "/proc/sys/vm/nr_hugepages"
	shmemEnabledPath = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
)

// hostKnobs remembers the host settings the bench changed, to put them
// back (restore) at the end of the section, on an error and on ^C (main's
// cleanup calls restore too). The zero value is ready; it is safe for
// concurrent use.
type hostKnobs struct {
	mu    sync.Mutex
	saved []knob // in the order first changed
}

type knob struct{ path, old string }

// set writes value to path, remembering the value it had before the
// bench first changed it.
func (k *hostKnobs) set(path, value string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	old, err := testutil.KnobValue(path)
	if err != nil {
		return err
	}
	known := false
	for _, s := range k.saved {
		known = known || s.path == path
	}
	if !known {
		k.saved = append(k.saved, knob{path, old})
	}
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}

// restore puts every changed setting back, the last changed first.
func (k *hostKnobs) restore() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var errs []error
	for i := len(k.saved) - 1; i >= 0; i-- {
		s := k.saved[i]
		if err := os.WriteFile(s.path, []byte(s.old), 0); err != nil {
			errs = append(errs, fmt.Errorf("put %s back to %q: %w", s.path, s.old, err))
		}
	}
	k.saved = nil
	return errors.Join(errs...)
}

// hugetlbAvail is /proc/meminfo's HugePages_Total and HugePages_Free less
// HugePages_Rsvd.
func hugetlbAvail() (total, avail int64, err error) {
	hp, err := procfs.ReadHugePages()
	return hp.Total, hp.Free - hp.Rsvd, err
}

// pageRow is one page mode over the big state.
type pageRow struct {
	mode    string // what the host was set up for: state.Pages4K, PagesTHP, PagesHugeTLB
	setting string // the host settings, as shown
	// What the workers' mappings of the region hold after their first
	// read, from /proc/<pid>/smaps (summed over the len(firsts) workers).
	rss, pmd, hugetlb int64
	firsts            []time.Duration // each worker's first GET /state
	faults            []int64         // minor page faults of each first read
	exits             []time.Duration // SIGKILL → pid gone, of workers that had read it all
	warm              time.Duration   // the same CRC-32 over a warm mapping, in the bench
}

// faultCost is the first full read less the CRC's own time: what the page
// faults cost.
func (r pageRow) faultCost() time.Duration { return max(0, medianD(r.firsts)-r.warm) }

// pageResult is the page-mode comparison.
type pageResult struct {
	size    int64
	workers int
	rows    []pageRow
	notes   []string // modes that could not be set up, and why
}

// runPageModes compares, over one big state, a master whose region is in
// 4 KiB pages with one in huge pages (THP, and hugetlb where the bench
// can reserve the pages): each worker's first full read and a killed
// worker's teardown. It changes the host's settings and puts them back.
func (b *bench) runPageModes() (*pageResult, error) {
	defer b.p.killAll()
	defer func() {
		if err := b.knobs.restore(); err != nil {
			b.logf("  %v", err)
		}
	}()
	res := &pageResult{size: 1024 * mib, workers: 2}
	kills := 6
	if b.quick {
		kills = 3
	}
	if os.Geteuid() != 0 {
		res.notes = append(res.notes, "not run as root: the bench cannot change vm.nr_hugepages or shmem_enabled")
		return res, nil
	}
	path := filepath.Join(b.tmp, "state-pages.bin")
	if err := writeRandom(path, res.size); err != nil {
		return nil, err
	}
	defer os.Remove(path)
	for _, mode := range []string{state.Pages4K, state.PagesTHP, state.PagesHugeTLB} {
		setting, err := b.setupPages(mode, res.size)
		if err != nil {
			res.notes = append(res.notes, fmt.Sprintf("%s: %v", mode, err))
			b.logf("  %s pages: not measured: %v", mode, err)
			continue
		}
		row, err := b.pagesOne(path, mode, res.workers, kills)
		if err != nil {
			return nil, fmt.Errorf("%s pages: %w", mode, err)
		}
		row.setting = setting
		res.rows = append(res.rows, row)
		b.logf("  %s pages: first GET /state median %v (CRC alone %v), %d faults; victim's exit median %v",
			mode, medianD(row.firsts), row.warm, medianI(row.faults), medianD(row.exits))
	}
	return res, nil
}

// setupPages sets the host up so that a master builds a region of size
// bytes in mode, and describes the settings.
func (b *bench) setupPages(mode string, size int64) (string, error) {
	total, avail, err := hugetlbAvail()
	if err != nil {
		return "", err
	}
	shmem := "never"
	var pages int64 // free hugetlb pages wanted
	if mode == state.PagesTHP {
		shmem = "advise"
	}
	if mode == state.PagesHugeTLB {
		pages = size/(2*mib) + 1
	}
	if err := b.knobs.set(shmemEnabledPath, shmem); err != nil {
		return "", err
	}
	if err := b.knobs.set(nrHugepagesPath, strconv.FormatInt(total-avail+pages, 10)); err != nil {
		return "", err
	}
	if _, got, err := hugetlbAvail(); err != nil || got < pages {
		return "", fmt.Errorf("the kernel could free only %d of the %d hugetlb pages asked for (%v)", got, pages, err)
	}
	return fmt.Sprintf("shmem_enabled=%s, %d free hugetlb pages", shmem, pages), nil
}

// pagesFlag is the master's -state-pages for each mode the bench sets the
// host up for (the reserved pool is used only when asked).
var pagesFlag = map[string]string{state.PagesHugeTLB: "hugetlb", state.PagesTHP: "auto", state.Pages4K: "4k"}

// pagesOne measures one mode: a master with the state, every worker's
// first read, then kills round robin, each victim having read it all.
func (b *bench) pagesOne(path, mode string, workers, kills int) (pageRow, error) {
	row := pageRow{mode: mode}
	m, err := startMaster(b.p, b.tmp, b.bins["v1"], workers, "-state", path, "-stable-period", "200ms", "-state-pages", pagesFlag[mode])
	if err != nil {
		return row, err
	}
	defer m.Stop()
	name := filepath.Base(path)
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i <= kills; i++ {
		if err := b.firstReads(m, c, name, &row); err != nil {
			return row, err
		}
		if i == kills {
			break
		}
		ev, _, err := b.kill(m, i%workers, 300*time.Millisecond)
		if err != nil {
			return row, err
		}
		row.exits = append(row.exits, ev.exit)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return row, err
	}
	warm, err := warmChecksum(m.PID(), name, fi.Size())
	if err != nil {
		return row, err
	}
	row.warm = warm
	return row, nil
}

// firstReads sends GET /state on fresh connections, one at a time, until
// every current worker has answered once, and records the first answer of
// each (the demo reads the whole region once per worker) with its page
// faults, then what maps the region in each such worker.
func (b *bench) firstReads(m *Master, c *http.Client, name string, row *pageRow) error {
	st, err := m.Status()
	if err != nil {
		return err
	}
	flt0 := map[int]int64{}
	for _, s := range st.Slots {
		if f, err := minorFaults(s.PID); err == nil {
			flt0[s.PID] = f
		}
	}
	pending := len(flt0)
	for n := 0; pending > 0; n++ {
		if n >= 200 {
			return fmt.Errorf("/state: %d workers still unanswered after %d requests", pending, n)
		}
		began := time.Now()
		resp, err := c.Get(m.URL("/state"))
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(began)
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/state: %s, %v", resp.Status, err)
		}
		pid := pidOf(string(body))
		f0, ok := flt0[pid]
		if !ok {
			continue // already measured, or started since
		}
		delete(flt0, pid)
		pending--
		row.firsts = append(row.firsts, took)
		if f1, err := minorFaults(pid); err == nil {
			row.faults = append(row.faults, f1-f0)
		}
		rss, pmd, huge, err := regionPages(pid, name)
		if err != nil {
			return err
		}
		row.rss, row.pmd, row.hugetlb = row.rss+rss, row.pmd+pmd, row.hugetlb+huge
	}
	return nil
}

// pidOf reads the demo's "pid=N" from a response body (0 if none).
func pidOf(body string) int {
	i := strings.Index(body, " pid=")
	if i < 0 {
		return 0
	}
	f := strings.Fields(body[i+5:])
	if len(f) == 0 {
		return 0
	}
	pid, _ := strconv.Atoi(f[0])
	return pid
}

// minorFaults is field 10 (minflt) of /proc/<pid>/stat.
func minorFaults(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b)[i+2:])
	if len(f) < 8 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return strconv.ParseInt(f[7], 10, 64)
}

// regionPages sums, over pid's mappings of the memfd named name, the
// bytes resident, mapped by huge page-table entries (ShmemPmdMapped,
// FilePmdMapped) and in hugetlb pages (Shared_ and Private_Hugetlb).
func regionPages(pid int, name string) (rss, pmd, hugetlb int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in, found := false, false
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") {
			in = strings.Contains(line, "/memfd:"+name)
			found = found || in
			continue
		}
		if !in || len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "Rss:":
			rss += kb << 10
		case "ShmemPmdMapped:", "FilePmdMapped:":
			pmd += kb << 10
		case "Shared_Hugetlb:", "Private_Hugetlb:":
			hugetlb += kb << 10
		}
	}
	if !found {
		return 0, 0, 0, fmt.Errorf("pid %d maps no /memfd:%s", pid, name)
	}
	return rss, pmd, hugetlb, sc.Err()
}

// warmChecksum maps the master's region (its memfd, opened through
// /proc/<master>/fd) in the bench as a worker would, reads it once, then
// times the demo's CRC-32 over the warm mapping (median of 3): the part
// of a first GET /state that is not page faults.
func warmChecksum(master int, name string, size int64) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/fd", master)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(target, "/memfd:"+name) {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return 0, err
		}
		defer f.Close()
		mp, err := state.Map(f, size)
		if err != nil {
			return 0, err
		}
		defer mp.Close()
		state.Checksum(mp.Bytes())
		var ds []time.Duration
		for range 3 {
			t := time.Now()
			state.Checksum(mp.Bytes())
			ds = append(ds, time.Since(t))
		}
		return medianD(ds), nil
	}
	return 0, fmt.Errorf("master %d holds no /memfd:%s", master, name)
}

// medianI is the median of v (0 for none).
func medianI(v []int64) int64 {
	f := make([]float64, len(v))
	for i, x := range v {
		f[i] = float64(x)
	}
	return int64(medianF(f))
}

func (r *report) pageModes(p *pageResult) {
	r.p("\n### Huge pages: first read and teardown over %s\n\n", fmtSize(p.size))
	r.p("A master with %d workers over a %s file of random bytes, once per page mode, the bench setting the host up for it (and putting the settings back after): ", p.workers, fmtSize(p.size))
	r.p("**4k**: `shmem_enabled=never`, no free hugetlb page; **thp**: `shmem_enabled=advise` (the master fills the memfd through a mapping advised `MADV_HUGEPAGE`, workers map it 2 MiB-aligned, advised too); **hugetlb**: `vm.nr_hugepages` raised until the region's pages and one more are free (an `MFD_HUGETLB` memfd). ")
	r.p("Each worker's **first full read** is its first `GET /state` (the demo computes the CRC-32 of every byte of the region once per worker), one request at a time on fresh connections; its page faults are that request's less the same CRC over a warm mapping of the region in the bench (no fault left to take), and minor faults are the worker's `minflt` across the request (in 4 KiB pages one fault maps 16 pages: the kernel's fault-around). ")
	r.p("Then SIGKILLs round robin, each victim having read the whole region, and **teardown** is the victim's exit as above (SIGKILL → pid gone). The mapping column is what `/proc/<pid>/smaps` says maps the region in the workers after their first read (huge page-table entries `ShmemPmdMapped`, or `Shared_Hugetlb`), so the mode is checked, not assumed.\n\n")
	if len(p.rows) == 0 {
		r.p("Not measured: %s.\n", strings.Join(p.notes, "; "))
		return
	}
	r.p("| pages | host | a worker's mapping after its first read, mean | first `GET /state`, median (n) | CRC over a warm mapping | page faults' part, median | minor faults, median | teardown, median (n) | |\n|---|---|---|---|---|---|---|---|---|\n")
	var base *pageRow
	for i := range p.rows {
		row := &p.rows[i]
		if row.mode == state.Pages4K {
			base = row
		}
		n := int64(max(1, len(row.firsts)))
		mapped := fmt.Sprintf("%s resident, %s of it in huge pages", fmtMiB(uint64((row.rss+row.hugetlb)/n)), fmtMiB(uint64((row.pmd+row.hugetlb)/n)))
		verdicts := ""
		if row.mode != state.Pages4K {
			huge := row.pmd+row.hugetlb >= (row.rss+row.hugetlb)*9/10
			read := r.verdict(goal{what: fmt.Sprintf("§5 first full read of %s, %s pages: page faults' part, median", fmtSize(p.size), row.mode), figure: fmtD(row.faultCost()), target: "≤ 30 ms",
				met: huge && row.faultCost() <= 30*time.Millisecond, why: pageWhy(huge, "the first read still faults in more than the goal allows")})
			down := r.verdict(goal{what: fmt.Sprintf("§5 killed worker's teardown over %s, %s pages, median", fmtSize(p.size), row.mode), figure: fmtD(medianD(row.exits)), target: "≤ 5 ms",
				met: huge && medianD(row.exits) <= 5*time.Millisecond, why: pageWhy(huge, "the exit takes longer than clearing the huge page-table entries explains")})
			verdicts = "read " + read + "; teardown " + down
		}
		r.p("| %s | %s | %s | %s (%d) | %s | %s | %s | %s (%d) | %s |\n", row.mode, row.setting, mapped, fmtD(medianD(row.firsts)), len(row.firsts), fmtD(row.warm),
			fmtD(row.faultCost()), fmtN(medianI(row.faults)), fmtD(medianD(row.exits)), len(row.exits), verdicts)
	}
	if base != nil {
		for _, row := range p.rows {
			if row.mode == state.Pages4K {
				continue
			}
			r.p("\n%s against 4k: page faults' part %.0f× less (%s → %s), minor faults %.0f× fewer, teardown %.0f× faster (%s → %s).",
				row.mode, ratio(float64(base.faultCost()), float64(max(row.faultCost(), time.Microsecond))), fmtD(base.faultCost()), fmtD(row.faultCost()),
				ratio(float64(medianI(base.faults)), float64(max(medianI(row.faults), 1))),
				ratio(float64(medianD(base.exits)), float64(medianD(row.exits))), fmtD(medianD(base.exits)), fmtD(medianD(row.exits)))
		}
		r.p("\n")
	}
	if len(p.notes) > 0 {
		r.p("\nNot measured: %s.\n", strings.Join(p.notes, "; "))
	}
	r.p("\n**Goal:** over %s, where huge pages are available, first full read's page faults ≤ 30 ms and a killed worker's teardown ≤ 5 ms (the CRC itself is compute, the same in every mode). The master picks the mode by itself (hugetlb, then THP, then 4 KiB: `state.Region.PageMode`); README, \"Huge pages\", says how to enable either on a host.\n", fmtSize(p.size))
}

// pageWhy explains a missed huge-page goal.
func pageWhy(huge bool, otherwise string) string {
	if !huge {
		return "the workers' mappings are not in huge pages (see the mapping column): the host gave ordinary pages."
	}
	return otherwise + "."
}
