package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// microRow is one Go benchmark: the median of its runs.
type microRow struct {
	pkg, name             string
	nsOp, mbS, bOp, allOp float64
	runs                  int
}

// micro is section 8.
type micro struct {
	args []string
	raw  string
	rows []microRow
}

// runMicro runs the packages' Go benchmarks.
func (b *bench) runMicro() (*micro, error) {
	res := &micro{args: []string{"test", "-run", "XXX", "-bench", ".", "-benchmem", "-count", "3"}}
	if b.quick {
		res.args = []string{"test", "-run", "XXX", "-bench", ".", "-benchmem", "-count", "1", "-benchtime", "100ms"}
	}
	res.args = append(res.args, "./state/...", "./internal/sdnotify", "./metrics", "./internal/aggregate")
	cmd := exec.Command("go", res.args...)
	cmd.Dir = b.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := b.p.run(cmd); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(res.args, " "), err, out.String())
	}
	res.raw = out.String()
	type acc struct {
		ns, mb, bo, al []float64
	}
	byName := map[string]*acc{}
	var order []string
	pkg := ""
	for _, line := range strings.Split(res.raw, "\n") {
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/preforkd/preforkd/")
			continue
		}
		m := reBench.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		key := pkg + " " + m[1]
		a := byName[key]
		if a == nil {
			a = &acc{}
			byName[key] = a
			order = append(order, key)
		}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseFloat(f[i], 64)
			switch f[i+1] {
			case "ns/op":
				a.ns = append(a.ns, v)
			case "MB/s":
				a.mb = append(a.mb, v)
			case "B/op":
				a.bo = append(a.bo, v)
			case "allocs/op":
				a.al = append(a.al, v)
			}
		}
	}
	for _, k := range order {
		a := byName[k]
		p, n, _ := strings.Cut(k, " ")
		res.rows = append(res.rows, microRow{pkg: p, name: n, nsOp: medianF(a.ns), mbS: medianF(a.mb),
			bOp: medianF(a.bo), allOp: medianF(a.al), runs: len(a.ns)})
	}
	sort.SliceStable(res.rows, func(i, j int) bool { return res.rows[i].pkg < res.rows[j].pkg })
	return res, nil
}

// hasBenchmarks reports whether the raw output ran any benchmark of pkg.
func (m *micro) hasBenchmarks(pkg string) bool {
	for _, r := range m.rows {
		if r.pkg == pkg {
			return true
		}
	}
	return false
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

var reBench = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)
