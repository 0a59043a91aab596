package main

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// scrapeRow is section 7 for one worker count.
type scrapeRow struct {
	workers  int
	took     []time.Duration
	paced    []time.Duration // scrapes 1.1 s apart: each re-reads the workers' memory
	cpuM     time.Duration   // CPU time per back-to-back scrape: the master
	cpuW     time.Duration   // and all its workers together
	series   int
	families map[string]int  // series by metric family (histogram parts folded)
	methods  map[string]bool // method labels of http_request_duration_seconds
}

// countSeries fills row's series counts from one exposition.
func (row *scrapeRow) countSeries(text string) {
	row.families, row.methods = map[string]int{}, map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		row.series++
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suf)
		}
		row.families[name]++
		if name == "http_request_duration_seconds" {
			if mm := reMethod.FindStringSubmatch(line); mm != nil {
				row.methods[mm[1]] = true
			}
		}
	}
}

// scrapeCounts are the worker counts of section 7.
var scrapeCounts = []int{2, 8, 32, 64}

// runScrape times the master's /metrics with 2, 8, 32 and 64 workers.
func (b *bench) runScrape() ([]scrapeRow, error) {
	defer b.p.killAll()
	n, paced := 50, 7
	if b.quick {
		n, paced = 10, 2
	}
	var rows []scrapeRow
	for _, w := range scrapeCounts {
		m, err := startMaster(b.p, b.tmp, b.bins["v1"], w)
		if err != nil {
			return nil, err
		}
		// Some traffic first, so that the workers' HTTP series exist.
		l := startLoad(loadConfig{Addr: m.Addr(), Path: "/", Fresh: 4, Max: 10 * time.Second, MaxRequests: 20 * w})
		time.Sleep(200 * time.Millisecond)
		l.finish()
		c := &http.Client{Timeout: 10 * time.Second}
		row := scrapeRow{workers: w}
		pid := m.cmd.Process.Pid
		var m0, w0 time.Duration
		for i := 0; i < 5+n; i++ {
			if i == 5 {
				m0, w0 = scrapeCPU(pid)
			}
			text, took, err := m.scrape(c)
			if err != nil {
				m.Stop()
				return nil, err
			}
			if i >= 5 { // the first five warm up
				row.took = append(row.took, took)
			}
			if i == 0 {
				row.countSeries(text)
			}
		}
		m1, w1 := scrapeCPU(pid)
		row.cpuM, row.cpuW = (m1-m0)/time.Duration(n), (w1-w0)/time.Duration(n)
		if w == 8 || w == 32 {
			for range paced {
				time.Sleep(1100 * time.Millisecond)
				_, took, err := m.scrape(c)
				if err != nil {
					m.Stop()
					return nil, err
				}
				row.paced = append(row.paced, took)
			}
		}
		c.CloseIdleConnections()
		m.Stop()
		rows = append(rows, row)
		b.logf("  %d workers: p50 %v, p99 %v (%d series; CPU per scrape: master %v, workers %v)", w, pctD(row.took, 50), pctD(row.took, 99), row.series, row.cpuM, row.cpuW)
	}
	return rows, nil
}

// scrapeCPU returns the CPU time (user + system) so far of the master pid
// and of its children together.
func scrapeCPU(pid int) (master, workers time.Duration) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0
	}
	tick := time.Second / 100 // USER_HZ
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 > len(s) {
			continue
		}
		f := strings.Fields(s[i+2:]) // f[0] is field 3 (state)
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		switch {
		case p == pid:
			master += time.Duration(ut+st) * tick
		case ppid == pid:
			workers += time.Duration(ut+st) * tick
		}
	}
	return master, workers
}

func (r *report) scrape(rows []scrapeRow) {
	r.p("\n## 7. Scrape latency\n\n")
	r.p("The master's `/metrics` (its own series plus every worker's registry, fetched over each worker's metrics socket and merged), fetched sequentially over one keep-alive connection (gzip, as Prometheus asks): 5 warm-up scrapes, then %d timed, no other load. ", len(rows[0].took))
	r.p("p99 is by nearest rank. CPU per scrape is the time the master and all its workers spent over the timed scrapes (from /proc, 10 ms ticks), divided by their number: on this 2-CPU machine, a scrape cannot take less than half their sum. ")
	r.p("Back to back, a scrape reuses the workers' memory readings (smaps_rollup, re-read when older than 1 s, their age in `prefork_worker_memory_age_seconds`); the paced column is scrapes 1.1 s apart, each of which re-reads them, as every Prometheus scrape does.\n\n")
	r.p("| workers | series | p50 | p99 | max | CPU per scrape: master + workers | p50, scrapes 1.1 s apart |\n|---|---|---|---|---|---|---|\n")
	var p50at8, p50at32 time.Duration
	for _, row := range rows {
		paced := "—"
		if len(row.paced) > 0 {
			paced = fmt.Sprintf("%s (of %d)", fmtD(pctD(row.paced, 50)), len(row.paced))
		}
		r.p("| %d | %s | %s | %s | %s | %s + %s | %s |\n", row.workers, fmtN(int64(row.series)), fmtD(pctD(row.took, 50)), fmtD(pctD(row.took, 99)), fmtD(maxD(row.took)),
			fmtD(row.cpuM), fmtD(row.cpuW), paced)
		switch row.workers {
		case 8:
			p50at8 = pctD(row.took, 50)
		case 32:
			p50at32 = pctD(row.took, 50)
		}
	}
	for _, row := range rows {
		if row.workers != 8 {
			continue
		}
		var names []string
		for k := range row.families {
			names = append(names, k)
		}
		sort.Slice(names, func(i, j int) bool { return row.families[names[i]] > row.families[names[j]] })
		var top []string
		for _, k := range names[:min(4, len(names))] {
			top = append(top, fmt.Sprintf("`%s` %s", k, fmtN(int64(row.families[k]))))
		}
		r.p("\nThe largest metric families of the 8-worker scrape (series, histogram buckets included): %s.\n", strings.Join(top, ", "))
	}
	r.p("\n**Goals:** p50 ≤ 2 ms with 8 workers, ≤ 5 ms with 32.\n\n")
	r.p("- 8 workers, %s: %s\n", fmtD(p50at8), r.verdict(goal{what: "§7 /metrics scrape p50, 8 workers", figure: fmtD(p50at8), target: "≤ 2 ms", met: p50at8 > 0 && p50at8 <= 2*time.Millisecond,
		why: scrapeWhy(rows, 8)}))
	r.p("- 32 workers, %s: %s\n", fmtD(p50at32), r.verdict(goal{what: "§7 /metrics scrape p50, 32 workers", figure: fmtD(p50at32), target: "≤ 5 ms", met: p50at32 > 0 && p50at32 <= 5*time.Millisecond,
		why: scrapeWhy(rows, 32)}))
	r.p("\n**Peer:** Python's prometheus_client in multiprocess mode merges per-process files at scrape time; with many files scrapes take seconds to tens of seconds (prometheus/client_python#204, #367).\n")
}

// scrapeWhy explains a slow scrape with n workers from where its CPU went.
func scrapeWhy(rows []scrapeRow, n int) string {
	var row scrapeRow
	for _, x := range rows {
		if x.workers == n {
			row = x
		}
	}
	s := fmt.Sprintf("a scrape of %d workers costs %s of CPU in the master and %s in the workers (%s each: gathering its registry, runtime and process collectors included, and encoding it), %s series in all, on 2 CPUs shared with the scraper. ",
		n, fmtD(row.cpuM), fmtD(row.cpuW), fmtD(row.cpuW/time.Duration(max(1, n))), fmtN(int64(row.series)))
	if len(row.methods) > 1 {
		var ms []string
		for k := range row.methods {
			ms = append(ms, k)
		}
		sort.Strings(ms)
		s += fmt.Sprintf("`http_request_duration_seconds` holds a histogram for each of %d methods (%s) although the bench sent only GETs. ", len(ms), strings.Join(ms, ", "))
	}
	return s + "What would close it: the master's side is its text encoding and gzip of every series and the merge (see §8's `Gather` benchmarks); the workers' side is client_golang's registry and Go collector at every answer. " +
		"A worker that answers \"unchanged\" for the families it sent last time (a protocol extension) and a master that renders each series' text once and re-uses it would leave only what changed."
}

var reMethod = regexp.MustCompile(`method="([^"]*)"`)
