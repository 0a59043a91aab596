package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// bench holds what every scenario needs.
type bench struct {
	root, tmp string            // the module root; a temporary directory
	bins      map[string]string // built executables by name
	p         *procs
	quick     bool
	nproc     int
	began     time.Time
	knobs     hostKnobs // host settings a section changed, put back by cleanup
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%6.1fs "+format+"\n", append([]any{time.Since(b.began).Seconds()}, a...)...)
}

// results are everything the report shows; a section not run is nil.
type results struct {
	machine    machine
	cpu        cpuUse
	root       string
	took       map[string]time.Duration // by section
	total      time.Duration
	quick      bool
	throughput *throughput
	live       *liveRun
	memory     *memResult
	balance    *balance
	scrape     []scrapeRow
	micro      *micro
	soak       *soak
	rollout    *rollout
}

func run() error {
	quick := flag.Bool("quick", false, "a fast smoke run (shorter, fewer turns, smaller states); its report says so")
	out := flag.String("out", "BENCHMARKS.md", "the report to write (relative to the module root)")
	chart := flag.String("chart", "bench/chart.svg", "the chart to write (relative to the module root)")
	only := flag.String("sections", "1,2,4,6,7,8,9,10", "sections to run (2 also runs 3, 4 also runs 5)")
	flag.Parse()
	if _, err := exec.LookPath("wrk"); err != nil {
		return errWrkMissing
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	p, err := newProcs()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "preforkd-bench-")
	if err != nil {
		return err
	}
	b := &bench{root: root, tmp: tmp, p: p, quick: *quick, nproc: runtime.NumCPU(), began: time.Now(), bins: map[string]string{}}
	// Whatever happens, every process started is ended by pid and the
	// temporary directory (state files included) removed.
	cleanup := func() { p.killAll(); b.knobs.restore(); os.RemoveAll(tmp) }
	defer cleanup()
	stopOnSignal(cleanup)

	res := &results{machine: describeMachine(), root: root, took: map[string]time.Duration{}, quick: *quick}
	cpu0 := readCPU()
	sections := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		sections[strings.TrimSpace(s)] = true
	}
	steps := []struct {
		key, name string
		do        func() error
	}{
		{"build", "build", b.build},
		{"1", "throughput", func() (err error) { res.throughput, err = b.runThroughput(); return }},
		{"2", "upgrades and worker kills under load", func() (err error) { res.live, err = b.runLive(); return }},
		{"4", "memory and start time vs state size", func() (err error) { res.memory, err = b.runMemory(); return }},
		{"6", "accept balance", func() (err error) { res.balance, err = b.runBalance(); return }},
		{"7", "scrape latency", func() (err error) { res.scrape, err = b.runScrape(); return }},
		{"8", "Go micro-benchmarks", func() (err error) { res.micro, err = b.runMicro(); return }},
		{"9", "soak: 1,000 upgrades and 5,000 worker kills", func() (err error) { res.soak, err = b.runSoak(); return }},
		{"10", "upgrades with a canary and with surge control", func() (err error) { res.rollout, err = b.runRollout(); return }},
	}
	for _, s := range steps {
		if s.key != "build" && !sections[s.key] {
			continue
		}
		b.logf("%s …", s.name)
		began := time.Now()
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		res.took[s.key] = time.Since(began)
	}
	res.total = time.Since(b.began)
	p.killAll()
	res.cpu = readCPU().since(cpu0, res.total)
	return b.write(res, *out, *chart)
}

// write writes the report and, when section 2 ran, the chart.
func (b *bench) write(res *results, out, chart string) error {
	outPath, chartPath := inRoot(b.root, out), inRoot(b.root, chart)
	if res.live != nil {
		if err := os.WriteFile(chartPath, []byte(chartSVG(res.live)), 0o644); err != nil {
			return err
		}
	}
	// The report links the chart relative to itself.
	link, err := filepath.Rel(filepath.Dir(outPath), chartPath)
	if err != nil {
		link = chartPath
	}
	if err := os.WriteFile(outPath, []byte(renderReport(res, filepath.ToSlash(link))), 0o644); err != nil {
		return err
	}
	b.logf("wrote %s and %s in %v", out, chart, res.total.Round(time.Second))
	return nil
}

// stopOnSignal runs cleanup and exits on SIGINT or SIGTERM, so that ^C
// leaves no process behind.
func stopOnSignal(cleanup func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "bench: %v: stopping everything it started\n", s)
		cleanup()
		os.Exit(130)
	}()
}

// inRoot resolves a path given on the command line against the module root.
func inRoot(root, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}

// moduleRoot is the directory of the preforkd module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run it from the preforkd module: go run ./bench")
	}
	b, err := os.ReadFile(mod)
	if err != nil || !strings.Contains(string(b), "module github.com/preforkd/preforkd\n") {
		return "", errors.New("run it from the preforkd module: go run ./bench")
	}
	return filepath.Dir(mod), nil
}

// build builds preforkd v1 and v2 and the three comparison programs into
// the temporary directory.
func (b *bench) build() error {
	targets := []struct{ name, pkg, ldflags string }{
		{"v1", "./cmd/preforkd", "-X main.version=v1"},
		{"v2", "./cmd/preforkd", "-X main.version=v2"},
		{"single", "./bench/cmd/single", ""},
		{"fastworker", "./bench/cmd/fastworker", ""},
		{"fastprefork", "./bench/cmd/fastprefork", ""},
	}
	for _, t := range targets {
		out := filepath.Join(b.tmp, t.name)
		args := []string{"build", "-o", out}
		if t.ldflags != "" {
			args = append(args, "-ldflags", t.ldflags)
		}
		cmd := exec.Command("go", append(args, t.pkg)...)
		cmd.Dir = b.root
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := b.p.run(cmd); err != nil {
			return fmt.Errorf("go build %s: %w", t.pkg, err)
		}
		b.bins[t.name] = out
	}
	return nil
}

// machine describes where the figures were taken.
type machine struct {
	nproc              int
	cpu, kernel, goVer string
	memTotal           string
	wrk                string
	date               time.Time
}

func describeMachine() machine {
	m := machine{nproc: runtime.NumCPU(), goVer: runtime.Version(), date: time.Now().UTC(), wrk: wrkVersion()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:]) +
			" " + unix.ByteSliceToString(u.Machine[:])
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %g kB", &kb); err == nil {
			m.memTotal = fmt.Sprintf("%.1f GiB", kb/(1<<20))
		}
	}
	return m
}

// cpuSample is the machine's CPU time and the bench's own (itself and
// every descendant it or they reaped), in clock ticks.
type cpuSample struct{ busy, steal, own float64 }

// cpuUse is what the machine did during the run, in CPU-seconds.
type cpuUse struct {
	capacity, busy, own, steal float64
}

// Other is the CPU time used by processes the bench did not start.
func (c cpuUse) Other() float64 { return max(0, c.busy-c.own) }

func readCPU() cpuSample {
	var s cpuSample
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		v := make([]float64, len(f))
		for i := 1; i < len(f); i++ {
			fmt.Sscan(f[i], &v[i])
		}
		if len(f) > 8 { // cpu user nice system idle iowait irq softirq steal
			s.busy, s.steal = v[1]+v[2]+v[3]+v[6]+v[7], v[8]
		}
	}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b)[i+2:])
			for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
				var x float64
				if k < len(f) {
					fmt.Sscan(f[k], &x)
				}
				s.own += x
			}
		}
	}
	return s
}

// since is the use between two samples (USER_HZ is 100 on Linux).
func (s cpuSample) since(s0 cpuSample, d time.Duration) cpuUse {
	const hz = 100
	return cpuUse{capacity: d.Seconds() * float64(runtime.NumCPU()), busy: (s.busy - s0.busy) / hz,
		own: (s.own - s0.own) / hz, steal: (s.steal - s0.steal) / hz}
}
