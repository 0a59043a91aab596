// Command bench measures preforkd against its peers and its own goals, and
// writes BENCHMARKS.md and bench/chart.svg. From the module root:
//
//	go run ./bench           # the full run (about 20 minutes on 2 CPUs); writes the committed files
//	go run ./bench -quick    # a smoke run (about 2 minutes); its report says so
//	go run ./bench -sections 2 -out /tmp/b.md -chart /tmp/chart.svg
//
// It needs wrk (Debian/Ubuntu: apt-get install wrk) and exits non-zero,
// saying so, without it.
//
// It builds cmd/preforkd twice (-ldflags "-X main.version=v1" and v2) and
// the three comparison programs in bench/cmd (single: one net/http process;
// fastworker: preforkd's library running fasthttp workers; fastprefork:
// fasthttp's own prefork) into a temporary directory, then runs, on
// 127.0.0.1 only:
//
//  1. throughput, p99, server CPU and context switches per request of
//     eight rows (preforkd net/http and fasthttp workers, one net/http
//     process with and without preforkd's per-request work, fasthttp
//     prefork; 2 and 4 workers) under wrk -c32, wrk -c256 and fresh
//     connections, 5 alternated turns; connections and requests per
//     worker; a profiled turn of b and b+;
//  2. upgrades under the bench's own load generator (load.go: paced
//     keep-alive and fresh-connection clients that never retry, every
//     request recorded), then wrk across upgrades;
//  3. worker SIGKILLs under the same generator run (the chart), then on a
//     master with -spare 1;
//  4. workers' PSS over 64 MiB … 1 GiB states of random bytes;
//  5. worker start time against state size; over 1 GiB, each worker's
//     first read and a killed worker's teardown in 4 KiB, THP and hugetlb
//     pages (the bench sets vm.nr_hugepages and shmem_enabled, and puts
//     them back);
//  6. accept balance: the three -balance modes (conns, accepts, off), turn
//     by turn, with fresh connections (4 workers) and wrk -c32 (2 workers);
//  7. /metrics scrape latency and CPU with 2, 8, 32 and 64 workers;
//  8. the Go micro-benchmarks of ./state/..., ./internal/sdnotify, ./metrics, ./internal/aggregate;
//  9. the soak: 1,000 upgrades and 5,000 worker SIGKILLs under a paced
//     load, the master's descriptors, threads, goroutines and RSS sampled
//     every 50 upgrades (their slopes reported), zombies counted, and what
//     is left after the final SIGTERM (go run ./bench -sections 9 runs it
//     alone, in about 5 minutes);
//  10. an upgrade of 4 workers all at once, with -upgrade-surge 1, with a
//     canary, and with both: its time, and the peak worker processes and
//     peak sum of their PSS (3 turns, alternated).
//
// Every figure that matters is a ratio measured in the same run, or a
// goal checked against a figure; the report says "met" or "missed — why".
//
// Processes: the bench makes itself a child subreaper, so every master
// (including the new masters of upgrades, orphaned when the old one exits)
// and every worker stays its descendant; at the end of each section, on
// failure too, and on SIGINT/SIGTERM, it SIGKILLs its descendants by pid.
// Every load loop is bounded in time and in requests. The state files live
// in a temporary directory removed at the end.
//
// Files: one per section, each holding its run and its report:
// throughput.go (§1, its report in throughputreport.go, its profiled turn
// in profile.go, its /proc and socket readings in serverstat.go),
// upgrade.go (§2), respawn.go (§3), memory.go and hugepages.go (§4–5),
// balance.go (§6),
// scrape.go (§7), micro.go (§8), soak.go (§9), rollout.go (§10); and the plumbing: main.go (flags,
// orchestration, machine), proc.go (starting and ending processes),
// master.go (a preforkd master: its log pipe, pid file and control socket
// status), load.go (the generator), wrk.go (running and parsing wrk
// --latency), stats.go, report.go (the document's frame, summary and
// number formats), chart.go (SVG).
package main
