package main

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
	"golang.org/x/sys/unix"
)

// soak is section 9: many upgrades and worker kills under load, with the
// master's resources sampled as it goes.
type soak struct {
	upgrades, kills int
	took            time.Duration
	points          []soakPoint
	requests, fail  int
	errs            map[string]int
	zombiesMax      int // zombies seen at any checkpoint
	leftover        int // processes left 2 s after the final SIGTERM
}

// soakPoint is one checkpoint: the current master's resources after n
// upgrades.
type soakPoint struct {
	n, kills       int
	fds, threads   int
	rssKiB         int
	goroutines     int
	zombies        int
	masterPID, gen int
}

// runSoak alternates an upgrade with killsPer worker SIGKILLs (round robin
// over 2 slots, each victim past -stable-period) under a paced load, and
// samples the master every step upgrades.
func (b *bench) runSoak() (*soak, error) {
	defer b.p.killAll()
	s := &soak{upgrades: 1000, kills: 5000}
	if b.quick {
		s.upgrades, s.kills = 40, 200
	}
	killsPer, step := s.kills/s.upgrades, max(1, s.upgrades/20)
	m, err := startMaster(b.p, b.tmp, b.bins["v1"], 2, "-stable-period", "20ms")
	if err != nil {
		return nil, err
	}
	l := startLoad(loadConfig{Addr: m.Addr(), Path: "/", KeepAlive: 4, Fresh: 2, Rate: 100,
		Max: 15 * time.Minute, MaxRequests: 100 * 60 * 15})
	began := time.Now()
	version, kills := "v1", 0
	for n := 0; n <= s.upgrades; n++ {
		if n%step == 0 {
			p, err := sampleMaster(m)
			if err != nil {
				l.finish()
				return nil, err
			}
			p.n, p.kills = n, kills
			s.points = append(s.points, p)
			s.zombiesMax = max(s.zombiesMax, p.zombies)
			b.logf("  soak: %d upgrades, %d kills: master fds %d, threads %d, goroutines %d, rss %d KiB, zombies %d",
				n, kills, p.fds, p.threads, p.goroutines, p.rssKiB, p.zombies)
		}
		if n == s.upgrades {
			break
		}
		for k := 0; k < killsPer; k++ {
			if _, _, err := b.kill(m, kills%2, 25*time.Millisecond); err != nil {
				l.finish()
				return nil, fmt.Errorf("kill %d: %w", kills+1, err)
			}
			kills++
		}
		version = map[string]string{"v1": "v2", "v2": "v1"}[version]
		if _, _, err := b.upgrade(m, version); err != nil {
			l.finish()
			return nil, fmt.Errorf("upgrade %d: %w", n+1, err)
		}
	}
	s.took = time.Since(began)
	samples := l.finish()
	s.requests = len(samples)
	for _, x := range samples {
		if !x.ok {
			s.fail++
		}
	}
	s.errs = l.errors()
	s.leftover = stopAndCount(m)
	return s, nil
}

// stopAndCount sends SIGTERM to the master, waits for it, and counts what
// is left of everything it started 2 s later.
func stopAndCount(m *Master) int {
	pid := m.PID()
	unix.Kill(pid, unix.SIGTERM)
	m.waitGone(pid, 30*time.Second)
	time.Sleep(2 * time.Second)
	m.p.reap()
	return len(testutil.Live(testutil.Descendants(os.Getpid())))
}

// sampleMaster reads the current master's descriptors, threads, RSS and
// goroutines, and counts zombies among its children.
func sampleMaster(m *Master) (soakPoint, error) {
	st, err := m.Status()
	if err != nil {
		return soakPoint{}, err
	}
	p := soakPoint{masterPID: st.PID, gen: st.Generation}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", st.PID))
	if err != nil {
		return p, err
	}
	p.fds = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.PID))
	if err != nil {
		return p, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "VmRSS:" {
			p.rssKiB, _ = strconv.Atoi(f[1])
		}
		if len(f) >= 2 && f[0] == "Threads:" {
			p.threads, _ = strconv.Atoi(f[1])
		}
	}
	text, _, err := m.scrape(&http.Client{Timeout: 5 * time.Second})
	if err != nil {
		return p, err
	}
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, "prefork_master_go_goroutines "); ok {
			p.goroutines, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	m.p.reap() // the old masters the bench adopted are its own to reap
	for _, q := range testutil.Procs() {
		if q.State == 'Z' && q.PPID == st.PID {
			p.zombies++
		}
	}
	return p, nil
}

// slope is the least-squares slope of y over x.
func slope(x, y []float64) float64 {
	n := float64(len(x))
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx, sy, sxx, sxy = sx+x[i], sy+y[i], sxx+x[i]*x[i], sxy+x[i]*y[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

func (r *report) soak(s *soak) {
	r.p("\n## 9. Soak: upgrades and worker kills under load\n\n")
	r.p("preforkd demo, 2 workers, `-stable-period 20ms`; 4 keep-alive and 2 fresh-connection clients at 100 req/s each (never retrying). "+
		"%d upgrades (SIGHUP, `v1` ↔ `v2` renamed over the binary, each waited for until the old master exited), with %d worker SIGKILLs between them "+
		"(round robin, each victim up ≥ 25 ms, each waited for until its replacement was ready): %d kills in all, in %v. "+
		"Every %d upgrades the bench reads the current master's descriptors (`/proc/<pid>/fd`), threads and RSS (`/proc/<pid>/status`), its own `go_goroutines` from `/metrics`, and counts zombies among the master's children.\n\n",
		s.upgrades, s.kills/s.upgrades, s.kills, s.took.Round(time.Second), max(1, s.upgrades/20))
	r.p("| upgrades | kills | master fds | threads | goroutines | RSS (MiB) | zombies |\n|---|---|---|---|---|---|---|\n")
	var x, fds, thr, gor, rss []float64
	for _, p := range s.points {
		r.p("| %d | %d | %d | %d | %d | %.1f | %d |\n", p.n, p.kills, p.fds, p.threads, p.goroutines, float64(p.rssKiB)/1024, p.zombies)
		x = append(x, float64(p.n))
		fds, thr = append(fds, float64(p.fds)), append(thr, float64(p.threads))
		gor, rss = append(gor, float64(p.goroutines)), append(rss, float64(p.rssKiB)/1024)
	}
	per := func(v []float64) float64 { return 100 * slope(x, v) }
	flat := per(fds) < 1 && per(gor) < 2 && per(rss) < 1 // growth only: a falling count is not a leak
	figs := fmt.Sprintf("%+.2f / %+.2f / %+.2f / %+.2f MiB", per(fds), per(thr), per(gor), per(rss))
	r.p("\n| | figure | goal | |\n|---|---|---|---|\n")
	r.p("| slope per 100 upgrades (and %d kills): fds / threads / goroutines / RSS | %s | flat | %s |\n", 100*s.kills/s.upgrades, figs,
		r.verdict(goal{what: "§9 soak: the master's fds, goroutines, RSS per 100 upgrades", figure: figs, target: "flat (growth per 100 upgrades: fds < 1, goroutines < 2, RSS < 1 MiB)", met: flat,
			why: "a resource grows with upgrades or kills: the table above shows which"}))
	r.p("| zombies at any checkpoint | %d | 0 | %s |\n", s.zombiesMax, r.verdict(goal{what: "§9 soak: zombies", figure: strconv.Itoa(s.zombiesMax), target: "0", met: s.zombiesMax == 0,
		why: "a process exited and nobody reaped it"}))
	r.p("| processes left 2 s after the last master's SIGTERM | %d | 0 | %s |\n", s.leftover, r.verdict(goal{what: "§9 soak: processes left after the stop", figure: strconv.Itoa(s.leftover), target: "0", met: s.leftover == 0,
		why: "something the masters started outlived them"}))
	r.p("| failed requests (a SIGKILL drops the victim's connections and the requests on them) | %d of %d: %.1f per kill | — | informational: upgrades alone are §2 |\n",
		s.fail, s.requests, float64(s.fail)/float64(max(1, s.kills)))
	if len(s.errs) > 0 {
		r.p("\nError kinds: %s.\n", errLine(s.errs))
	}
}
