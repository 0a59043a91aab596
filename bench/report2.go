package main

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"time"
)

func (r *report) crashes(l *liveRun, chart string, idleStart time.Duration) {
	r.p("\n## 3. Worker crash\n\n")
	var resp, start, kills, exits []time.Duration
	for _, k := range l.kills {
		resp, start, kills, exits = append(resp, k.respawn), append(start, k.start), append(kills, k.at), append(exits, k.exit)
	}
	inCrash := func(s sample) bool { return s.start >= l.crashFrom }
	failed := failures(l.samples, inCrash)
	failedKA := failures(l.samples, func(s sample) bool { return inCrash(s) && !s.fresh })
	win := latencies(l.samples, func(s sample) bool { return within(s.start, kills, time.Second) })
	steady := latencies(l.samples, func(s sample) bool {
		return s.start < l.upgradeEnd && s.start >= time.Second && !within(s.start, hupsOf(l), time.Second)
	})
	r.p("Right after the upgrades, under the same generator run, %d SIGKILLs of workers, round robin over the %d slots, every %v; each victim had been up ≥ 300 ms (> `-stable-period 200ms`, so it is replaced at once, without backoff). ",
		len(l.kills), l.workers, l.killEvery)
	r.p("**Respawn-to-serving** is from the SIGKILL to the moment the bench read the master's `worker ready` line for the slot's new pid from its stderr pipe (no polling; the worker sends READY=1 once it accepts). ")
	r.p("**Start → ready** is that line's `start_time` field: from the new process's start to its READY=1, without the master noticing the death and forking.\n\n")
	per := float64(failed) / float64(max(1, len(l.kills)))
	r.p("| | figure | goal | |\n|---|---|---|---|\n")
	r.p("| respawn-to-serving, median / p99 (of %d: the largest) | %s / %s | median ≤ 15 ms | %s |\n", len(resp), fmtD(medianD(resp)), fmtD(pctD(resp, 99)),
		r.verdict(goal{what: "§3 worker SIGKILL → replacement serving, median", figure: fmtD(medianD(resp)), target: "≤ 15 ms", met: medianD(resp) <= 15*time.Millisecond,
			why: respawnWhy(medianD(resp), medianD(start), medianD(exits), idleStart)}))
	r.p("| start → ready of the replacements, median / max | %s / %s | | |\n", fmtD(medianD(start)), fmtD(maxD(start)))
	r.p("| SIGKILL → victim's pid gone (its exit and reaping; polled every 0.5 ms), median / max | %s / %s | | |\n", fmtD(medianD(exits)), fmtD(maxD(exits)))
	r.p("| failed requests per kill | %.1f (%d over %d kills: keep-alive %d, fresh-connection %d) | (reported) | |\n", per, failed, len(l.kills), failedKA, failed-failedKA)
	r.p("| p99 latency, kill windows (SIGKILL … +1 s) vs steady state | %s vs %s | (reported) | |\n", fmtD(pctD(win, 99)), fmtD(pctD(steady, 99)))
	r.p("\nThe failed requests are the ones in flight on, or next sent over, the keep-alive connections the killed process held: they die with it, and a client that never retries sees each as an error (a retrying client, such as Go's `http.Transport` for an idempotent GET, would not). ")
	r.p("Round robin over %d slots makes that nearly all %d keep-alive clients at every kill: the clients that lost their connection reconnect while the replacement is still starting, so the surviving worker accepts them all, and it is the next victim. ", l.workers, l.cfg.KeepAlive)
	r.p("Fresh connections almost never fail (%d here): the listening socket belongs to the master, so connections queued in it survive a worker's death; only those the victim had already accepted are lost.\n", failed-failedKA)
	r.p("\n**Peers:** Unicorn respawns at once but without backoff (a crashing app spawns in a loop; preforkd backs off only for workers that die before `-stable-period`); fasthttp prefork gives up after `RecoverThreshold` = max(1, GOMAXPROCS/2) child deaths in its lifetime, so on this 2-CPU machine the second kill ends the whole server — it could not run this section at all. The README's own figure: 10.6–11.3 ms respawn-to-serving.\n")
	r.p("\n![](%s)\n\n", chart)
	r.p("The chart (`%s`) shows both phases: p99 and p50 latency per 250 ms bucket of request start times (log scale, left), failed requests per bucket (bars, right), a dashed green line at every SIGHUP and an orange one at every SIGKILL.\n", chart)
}

func hupsOf(l *liveRun) []time.Duration {
	var out []time.Duration
	for _, u := range l.upgrades {
		out = append(out, u.at)
	}
	return out
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
		r.p("It costs the requests nothing (the other workers keep accepting), but it delays the return to full capacity after a worker that touched a large state dies. What would close it: map the region with huge pages (a `MFD_HUGETLB` memfd, or transparent huge pages on shmem): 512× fewer entries to clear.\n")
	}
	r.p("\n**Peer:** a prefork server without shared state (fasthttp prefork, or Gunicorn without `--preload`) loads or parses its data in every child, so its start grows with S; here a worker maps the sealed region and reads nothing at start.\n")
}

func (r *report) balance(b *balance) {
	r.p("\n## 6. Accept balance\n\n")
	sockets := "one shared listening socket"
	if b.listeners > 1 {
		sockets = fmt.Sprintf("%d listening sockets (SO_REUSEPORT)", b.listeners)
	}
	r.p("%d workers on %s (counted in /proc/net/tcp); the bench's generator runs %d clients that open a new connection for every request (wrk cannot: it keeps connections alive), as fast as answered, for %v. ",
		b.workers, sockets, b.clients, b.dur)
	r.p("Requests per worker are the master's `/metrics` `http_requests_total{worker=…}` summed over code and method (cross-checked with the worker slot in each answer).\n\n")
	var keys []string
	for k := range b.perWorker {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	r.p("| worker | requests (/metrics) | share | answers seen by the generator |\n|---|---|---|---|\n")
	var sum float64
	for _, k := range keys {
		sum += b.perWorker[k]
	}
	for _, k := range keys {
		var slot int
		fmt.Sscan(k, &slot)
		r.p("| %s | %s | %.1f%% | %s |\n", k, fmtN(int64(b.perWorker[k])), 100*b.perWorker[k]/sum, fmtN(int64(b.bodies[slot])))
	}
	rat := b.ratio()
	r.p("\n%s requests, %d failed. **max/min = %.2f** — goal ≤ 1.25: %s\n", fmtN(int64(b.requests)), b.failed, rat,
		r.verdict(goal{what: "§6 accept balance, max/min requests per worker (4 workers, fresh connections)", figure: fmt.Sprintf("%.2f", rat), target: "≤ 1.25", met: rat > 0 && rat <= 1.25,
			why: balanceWhy(b)}))
	r.p("\n**Peers:** on one shared socket, accept skew reaches 3:1 (the Linux SO_REUSEPORT commit message); the Node.js cluster docs report \"over 70%% of connections in two of eight processes\".\n")
}

func (r *report) scrape(rows []scrapeRow) {
	r.p("\n## 7. Scrape latency\n\n")
	r.p("The master's `/metrics` (its own series plus every worker's registry, fetched over each worker's metrics socket and merged), fetched sequentially over one keep-alive connection: 5 warm-up scrapes, then %d timed, no other load. ", len(rows[0].took))
	r.p("p99 is by nearest rank: of %d scrapes, the largest.\n\n", len(rows[0].took))
	r.p("| workers | series | p50 | p99 | max |\n|---|---|---|---|---|\n")
	var p50at8 time.Duration
	for _, row := range rows {
		r.p("| %d | %s | %s | %s | %s |\n", row.workers, fmtN(int64(row.series)), fmtD(pctD(row.took, 50)), fmtD(pctD(row.took, 99)), fmtD(maxD(row.took)))
		if row.workers == 8 {
			p50at8 = pctD(row.took, 50)
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
	r.p("\n**Goal:** p50 ≤ 20 ms with 8 workers: %s\n", r.verdict(goal{what: "§7 /metrics scrape p50, 8 workers", figure: fmtD(p50at8), target: "≤ 20 ms", met: p50at8 > 0 && p50at8 <= 20*time.Millisecond,
		why: scrapeWhy(rows)}))
	r.p("\n**Peer:** Python's prometheus_client in multiprocess mode merges per-process files at scrape time; with many files scrapes take seconds to tens of seconds (prometheus/client_python#204, #367). The README's own figure: p50 14 ms, p99 31 ms with 8 workers.\n")
}

func (r *report) micro(m *micro) {
	r.p("\n## 8. Go micro-benchmarks\n\n")
	r.p("`go %s`, run after everything else (nothing else of the bench running). Key figures (median of the runs):\n\n", strings.Join(m.args, " "))
	r.p("| package | benchmark | time/op | throughput | B/op | allocs/op |\n|---|---|---|---|---|---|\n")
	for _, row := range m.rows {
		mb := ""
		if row.mbS > 0 {
			mb = fmt.Sprintf("%.0f MB/s", row.mbS)
		}
		r.p("| %s | %s | %s | %s | %s | %.0f |\n", row.pkg, row.name, fmtD(time.Duration(row.nsOp)), mb, fmtN(int64(row.bOp)), row.allOp)
	}
	if !m.hasBenchmarks("internal/sdnotify") {
		r.p("\n`./internal/sdnotify` has no benchmarks (its tests are unit and fuzz tests; this issue may not add files there), so it contributes nothing above.\n")
	}
	r.p("\nWhat they say: `state` `Get` is the demo's table lookup (a binary search in place over the mapped table, 0 allocations; `GetSmall` over a small table, `GetMapped` through a real read-only mapping); `Checksum` is what `/state` costs per byte; `metrics` `Gather` is the master's aggregation of 8 (or 32) workers' registries for one scrape (`Frozen`: workers that did not change since the last scrape)")
	for _, row := range m.rows {
		if row.name == "BenchmarkHTTPMiddleware" {
			r.p("; `HTTPMiddleware` is what a worker's HTTP metrics cost per request (`…Promhttp`: the same with promhttp's wrappers)")
			break
		}
	}
	r.p(". The README quotes `Get` over 1M keys 2.7 µs/op, `OpenTable` 23 ms, `Checksum` 6 GB/s for comparison.\n")
	r.p("\n<details><summary>raw output</summary>\n\n```\n%s```\n\n</details>\n", m.raw)
}

func balanceWhy(b *balance) string {
	if b.listeners > 1 {
		return "even with a listening socket per worker, the kernel's hash of the clients' ports spreads this many connections unevenly, or some workers are off-CPU when theirs arrive. What would close it: more connections per measurement, or fewer workers than CPUs."
	}
	return fmt.Sprintf("with one shared accept queue, every worker's epoll is woken by each new connection and the first to call accept wins, so the worker that happens to be on a CPU takes the most; "+
		"with %d workers on %d CPUs, and the load generator on the same CPUs, some are always off-CPU. "+
		"What would close it: a listening socket per worker with SO_REUSEPORT (the kernel then spreads connections by hash), with `net.ipv4.tcp_migrate_req=1` so a dying worker's queued connections move to the others instead of being reset — the trade-off behind the default of one shared socket; "+
		"or an accept that wakes one waiter (EPOLLEXCLUSIVE), which Go's netpoller does not use.", b.workers, runtime.NumCPU())
}

// respawnWhy explains a slow respawn from its parts.
func respawnWhy(resp, start, exit, idle time.Duration) string {
	s := fmt.Sprintf("of the %s (medians), the new worker's own start (its process start to READY=1: the Go runtime, the worker runtime, mapping the state, serving) takes %s; "+
		"the victim's exit until the master reaped it %s; the other %s is the master's restart: fork+exec, and the log line. ",
		fmtD(resp), fmtD(start), fmtD(exit), fmtD(max(0, resp-start-exit)))
	if idle > 0 {
		s += fmt.Sprintf("Without load (§5) a worker starts in %s: the load on the same CPUs slows it to %.1f×. ", fmtD(idle), ratio(float64(start), float64(idle)))
	}
	return s + "What would close it: keep a spare worker started and ready (not accepting) per master, so that a death is replaced by a worker that only has to start accepting; or trim the worker's start (what runs before READY=1)."
}

// scrapeWhy explains a slow scrape from what the 8-worker scrape held.
func scrapeWhy(rows []scrapeRow) string {
	var row scrapeRow
	for _, x := range rows {
		if x.workers == 8 {
			row = x
		}
	}
	type fam struct {
		name string
		n    int
	}
	var fams []fam
	for k, v := range row.families {
		fams = append(fams, fam{k, v})
	}
	sort.Slice(fams, func(i, j int) bool { return fams[i].n > fams[j].n })
	s := fmt.Sprintf("the scrape's cost grows with the series it merges (%s with 8 workers; see also §8's `Gather` benchmarks). ", fmtN(int64(row.series)))
	if len(fams) > 0 {
		top := fams[0]
		s += fmt.Sprintf("The largest family is `%s` with %s series (%.0f%%). ", top.name, fmtN(int64(top.n)), 100*float64(top.n)/float64(max(1, row.series)))
		if top.name == "http_request_duration_seconds" && len(row.methods) > 1 {
			var ms []string
			for k := range row.methods {
				ms = append(ms, k)
			}
			sort.Strings(ms)
			s += fmt.Sprintf("It holds a histogram for each of %d methods (%s) in every worker, although the bench sent only GETs: the children are created before any request. "+
				"What would close it: create a method's histogram on its first request, as for the counter, which leaves one histogram per worker here.", len(ms), strings.Join(ms, ", "))
			return s
		}
	}
	return s + "What would close it: fewer series per worker (drop rarely used runtime metrics, fewer histogram buckets) or a cheaper merge."
}
