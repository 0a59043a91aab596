package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// wrkResult is what wrk printed.
type wrkResult struct {
	ReqPerSec          float64
	Requests           int64
	P50, P75, P90, P99 time.Duration
	Connect, Read      int64 // socket errors
	Write, Timeout     int64
	Non2xx             int64
	Raw                string
	Split              []int         // the connections per server process, sampled mid-run
	CPU                time.Duration // wrk's own user and system CPU time
}

// SocketErrors is the sum of wrk's socket errors.
func (r wrkResult) SocketErrors() int64 { return r.Connect + r.Read + r.Write + r.Timeout }

// wrkMissing says how to get wrk.
var errWrkMissing = errors.New("wrk not found in PATH: install it (Debian/Ubuntu: apt-get install wrk) and run again")

// wrkArgs are the arguments of one run: threads, connections, duration.
func wrkArgs(threads, conns int, d time.Duration, url string) []string {
	return []string{"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns),
		"-d" + strconv.Itoa(int(d.Seconds())) + "s", "--timeout", "5s", "--latency", url}
}

// runWrk runs wrk to completion (it is killed 10 minutes later at the
// latest). With port > 0 it also samples, halfway through d, how the
// server's processes share wrk's connections.
func runWrk(p *procs, port int, d time.Duration, args ...string) (wrkResult, error) {
	w, err := startWrk(p, args...)
	if err != nil {
		return wrkResult{}, err
	}
	var split []int
	if port > 0 {
		time.Sleep(d / 2)
		split = connSplit(port)
	}
	r, err := w.wait(0)
	r.Split = split
	return r, err
}

// wrkRun is a wrk process in flight.
type wrkRun struct {
	cmd *exec.Cmd
	out bytes.Buffer
	ctx context.CancelFunc
}

// startWrk starts wrk; it is killed 10 minutes later at the latest.
func startWrk(p *procs, args ...string) (*wrkRun, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	w := &wrkRun{ctx: cancel}
	w.cmd = exec.CommandContext(ctx, "wrk", args...)
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	if err := p.start(w.cmd); err != nil {
		cancel()
		return nil, err
	}
	return w, nil
}

// wait waits for wrk; with interrupt > 0 it first sends SIGINT (wrk then
// stops and prints its figures) and waits at most that long.
func (w *wrkRun) wait(interrupt time.Duration) (wrkResult, error) {
	defer w.ctx()
	if interrupt > 0 {
		w.cmd.Process.Signal(unix.SIGINT)
		t := time.AfterFunc(interrupt, func() { w.cmd.Process.Kill() })
		defer t.Stop()
	}
	if err := w.cmd.Wait(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w: %s", err, w.out.String())
	}
	r, err := parseWrk(w.out.String())
	r.CPU = w.cmd.ProcessState.UserTime() + w.cmd.ProcessState.SystemTime()
	return r, err
}

var (
	reLatency = regexp.MustCompile(`(?m)^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	reReqs    = regexp.MustCompile(`(?m)^Requests/sec:\s+([\d.]+)`)
	reTotal   = regexp.MustCompile(`(?m)^\s+(\d+) requests in`)
	reSocket  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads wrk's report (run with --latency). The socket error and
// non-2xx lines are absent when zero.
func parseWrk(out string) (wrkResult, error) {
	r := wrkResult{Raw: out}
	m := reReqs.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk: no Requests/sec in its output:\n%s", out)
	}
	r.ReqPerSec, _ = strconv.ParseFloat(m[1], 64)
	if m := reTotal.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range reLatency.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		switch m[1] {
		case "50":
			r.P50 = d
		case "75":
			r.P75 = d
		case "90":
			r.P90 = d
		case "99":
			r.P99 = d
		}
	}
	if r.P99 == 0 {
		return r, fmt.Errorf("wrk: no latency distribution (run it with --latency):\n%s", out)
	}
	if m := reSocket.FindStringSubmatch(out); m != nil {
		n := make([]int64, 4)
		for i := range n {
			n[i], _ = strconv.ParseInt(m[i+1], 10, 64)
		}
		r.Connect, r.Read, r.Write, r.Timeout = n[0], n[1], n[2], n[3]
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return r, nil
}

// wrkVersion is wrk's first line of -v.
func wrkVersion() string {
	out, _ := exec.Command("wrk", "-v").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	if i := strings.Index(line, " Copyright"); i > 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}
