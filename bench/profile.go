package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// profileTurn is the profiled turn of b and b+ (wrk -c32): CPU profiles
// and allocations per request.
type profileTurn struct {
	dur            time.Duration
	b, bPlus       cpuProfile
	allocsPerReq   map[string]float64 // by row key
	bRPS, bPlusRPS []float64
}

// profileTurn runs wrk -c32 against b, b+, b+, b, each time taking a CPU
// profile over the middle of the run and reading the process's
// allocation count before and after.
func (b *bench) profileTurn(t *throughput) (*profileTurn, error) {
	p := &profileTurn{dur: 3 * time.Second, allocsPerReq: map[string]float64{}}
	if b.quick {
		p.dur = time.Second
	}
	paths := map[string][]string{}
	allocs, reqs := map[string]float64{}, map[string]float64{}
	for i, key := range []string{"b", "b+", "b+", "b"} {
		e := t.engine(key)
		m0, err := mallocs(e.side)
		if err != nil {
			return nil, err
		}
		w, err := startWrk(b.p, wrkArgs(1, 32, p.dur+time.Second, e.url)...)
		if err != nil {
			return nil, err
		}
		time.Sleep(500 * time.Millisecond)
		path := filepath.Join(b.tmp, fmt.Sprintf("cpu-%d-%s.pprof", i, strings.ReplaceAll(key, "+", "plus")))
		perr := fetchProfile(e.side, p.dur, path)
		r, err := w.wait(0)
		if err != nil {
			return nil, err
		}
		if perr != nil {
			return nil, perr
		}
		m1, err := mallocs(e.side)
		if err != nil {
			return nil, err
		}
		paths[key] = append(paths[key], path)
		allocs[key] += float64(m1 - m0)
		reqs[key] += float64(r.Requests)
		if key == "b" {
			p.bRPS = append(p.bRPS, r.ReqPerSec)
		} else {
			p.bPlusRPS = append(p.bPlusRPS, r.ReqPerSec)
		}
		b.logf("  profiled %s: %.0f req/s, %.1f allocations per request", key, r.ReqPerSec, ratio(float64(m1-m0), float64(r.Requests)))
	}
	for k := range allocs {
		p.allocsPerReq[k] = ratio(allocs[k], reqs[k])
	}
	var err error
	if p.b, err = readProfiles(paths["b"]...); err != nil {
		return nil, err
	}
	if p.bPlus, err = readProfiles(paths["b+"]...); err != nil {
		return nil, err
	}
	return p, nil
}

// cpuProfile is what CPU profiles of one server say: sampled CPU time by
// the function each sample is charged to (see chargedTo).
type cpuProfile struct {
	total float64            // seconds sampled
	by    map[string]float64 // seconds by function
}

// share is the fraction of the samples charged to fn.
func (p cpuProfile) share(fn string) float64 { return ratio(p.by[fn], p.total) }

// ours is the fraction of the samples charged to preforkd's own code
// (and the Prometheus client it calls).
func (p cpuProfile) ours() float64 {
	var s float64
	for fn, v := range p.by {
		if isOurs(fn) {
			s += v
		}
	}
	return ratio(s, p.total)
}

// only lists the functions that p was charged for and base never was,
// largest first: what one server runs and the other does not.
func (p cpuProfile) only(base cpuProfile) []string {
	var out []string
	for fn := range p.by {
		if base.by[fn] == 0 {
			out = append(out, fn)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return p.by[out[i]] > p.by[out[j]] || p.by[out[i]] == p.by[out[j]] && out[i] < out[j]
	})
	return out
}

// isOurs reports whether fn is preforkd's per-request code: the HTTP
// metrics (whose closures the compiler may inline into the caller, named
// after (*HTTPMetrics)), the drain's tracking, and the Prometheus client
// that the metrics call.
func isOurs(fn string) bool {
	return strings.Contains(fn, "preforkd/preforkd/") || strings.Contains(fn, "(*HTTPMetrics)") ||
		strings.Contains(fn, "prometheus/client_golang")
}

// neutral reports whether fn is shared machinery (the runtime, time,
// sync, atomics, assembly helpers) whose cost belongs to its caller.
func neutral(fn string) bool {
	if !strings.Contains(fn, ".") {
		return true // assembly: aeshashbody, memeqbody, …
	}
	for _, p := range []string{"runtime.", "internal/", "time.", "sync.", "sync/atomic.", "math.", "math/", "sort.", "strconv.", "unicode/", "slices.", "maps."} {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// chargedTo is the function a sample is charged to: from the leaf up, the
// first frame that is not shared machinery. time.Now called by the
// metrics is the metrics' cost; a syscall made by net/http is net/http's.
// A stack of shared machinery only (the scheduler, the GC) is "runtime".
func chargedTo(frames []string) string {
	for _, fn := range frames {
		if !neutral(fn) {
			return fn
		}
	}
	return "runtime (scheduler, GC)"
}

// fetchProfile saves a CPU profile of d from the net/http/pprof handlers on
// addr.
func fetchProfile(addr string, d time.Duration, path string) error {
	c := &http.Client{Timeout: d + 10*time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof on %s: %s", addr, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mallocs is the process's count of heap allocations so far (expvar's
// memstats on addr).
func mallocs(addr string) (uint64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/debug/vars")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		Memstats struct{ Mallocs uint64 } `json:"memstats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, fmt.Errorf("expvar on %s: %w", addr, err)
	}
	return v.Memstats.Mallocs, nil
}

// readProfiles merges CPU profiles, read with `go tool pprof -traces`
// (the profiles are symbolised by the Go runtime that wrote them: no
// binary needed).
func readProfiles(paths ...string) (cpuProfile, error) {
	p := cpuProfile{by: map[string]float64{}}
	for _, path := range paths {
		out, err := exec.Command("go", "tool", "pprof", "-traces", path).Output()
		if err != nil {
			return p, fmt.Errorf("go tool pprof -traces %s: %w", path, err)
		}
		parseTraces(string(out), &p)
	}
	return p, nil
}

// parseTraces adds pprof's -traces text to p: blocks separated by
// "-----------+-----…" lines, each a sample value and the leaf frame on
// its first line, then one caller per line.
func parseTraces(out string, p *cpuProfile) {
	var value float64
	var frames []string
	flush := func() {
		if len(frames) > 0 {
			p.total += value
			p.by[chargedTo(frames)] += value
		}
		value, frames = 0, nil
	}
	started := false
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "-----------+") {
			flush()
			started = true
			continue
		}
		if !started || strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(frames) == 0 && len(f) >= 2 {
			if d, err := time.ParseDuration(f[0]); err == nil {
				value = d.Seconds()
				f = f[1:]
			}
		}
		frames = append(frames, f[0]) // drop " (inline)"
	}
	flush()
}
