package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/preforkd/preforkd/internal/testutil"
)

// What §1 reads from /proc and from the kernel's socket table about the
// servers under load: which processes serve a port, the CPU time they
// used, and how many requests each keep-alive connection carried.

// socketOwners maps socket inodes to a bench descendant that holds them.
// An established connection is held by one process, the worker that
// accepted it (which one of several holds a shared listener does not
// matter here).
func socketOwners() map[string]int {
	owner := map[string]int{}
	for _, pid := range testutil.Descendants(os.Getpid()) {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			l, err := os.Readlink(dir + "/" + e.Name())
			if err == nil && strings.HasPrefix(l, "socket:[") {
				owner[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = pid
			}
		}
	}
	return owner
}

// serverPIDs are the bench's descendants that hold the socket listening on
// 127.0.0.1:port: a preforkd master and its workers, a prefork master and
// its children, or the one process of a plain server. Their CPU time is
// the server's.
func serverPIDs(port int) []int {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil
	}
	want := fmt.Sprintf(":%04X", port)
	inodes := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && strings.HasSuffix(f[1], want) && f[3] == "0A" { // LISTEN
			inodes[f[9]] = true
		}
	}
	var out []int
	for _, pid := range testutil.Descendants(os.Getpid()) {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			l, err := os.Readlink(dir + "/" + e.Name())
			if err == nil && inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// cpuSeconds is the user and system CPU time of the processes so far (a
// process that is gone counts 0).
func cpuSeconds(pids []int) float64 {
	var s float64
	for _, pid := range pids {
		s += statCPU(fmt.Sprintf("/proc/%d/stat", pid))
	}
	return s
}

// ownCPU is the bench's own CPU time so far (not its children's): the
// load generator's, while it runs.
func ownCPU() float64 { return statCPU("/proc/self/stat") }

// statCPU reads utime + stime from a /proc stat file, in seconds
// (USER_HZ is 100 on Linux).
func statCPU(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 > len(b) {
		return 0
	}
	f := strings.Fields(string(b)[i+2:])
	var s float64
	for _, k := range []int{11, 12} { // utime stime (fields 14, 15 of stat)
		if k < len(f) {
			v, _ := strconv.ParseFloat(f[k], 64)
			s += v
		}
	}
	return s / 100
}

// segsIn is one sample of the established connections to a port: the
// data segments each one has received so far (one per request for wrk,
// which writes each request at once and does not pipeline), by peer
// address, and the process that holds it.
type segsIn map[string]struct {
	pid  int
	segs int64
}

// sampleSegsIn asks ss(8) (iproute2) for the TCP info of every connection
// to 127.0.0.1:port, up to three times while it finds none (on a loaded
// machine a sample sometimes comes back empty). It returns nil when ss is
// missing or fails.
func sampleSegsIn(port int) segsIn {
	var s segsIn
	var why string
	for i := 0; i < 3 && len(s) == 0; i++ {
		s, why = sampleSegsInOnce(port)
	}
	if len(s) == 0 {
		fmt.Fprintf(os.Stderr, "bench: ss on port %d: %s\n", port, why)
	}
	return s
}

// sampleSegsInOnce is one sample, and when it is empty, why.
func sampleSegsInOnce(port int) (segsIn, string) {
	out, err := exec.Command("ss", "-Htine", "state", "established", fmt.Sprintf("( sport = :%d )", port)).Output()
	if err != nil {
		return nil, fmt.Sprintf("ss: %v", err)
	}
	owner := socketOwners()
	res := segsIn{}
	var peer, ino string
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		if line[0] != '\t' && line[0] != ' ' {
			f := strings.Fields(line)
			peer, ino = "", ""
			if len(f) > 3 {
				peer = f[3]
			}
			for _, x := range f {
				if v, ok := strings.CutPrefix(x, "ino:"); ok {
					ino = v
				}
			}
			continue
		}
		for _, x := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(x, "data_segs_in:"); ok && peer != "" {
				n, _ := strconv.ParseInt(v, 10, 64)
				if pid, ok := owner[ino]; ok {
					res[peer] = struct {
						pid  int
						segs int64
					}{pid, n}
				}
			}
		}
	}
	if len(res) == 0 {
		return nil, fmt.Sprintf("%d lines from ss, %d sockets owned by the bench's descendants", strings.Count(string(out), "\n"), len(owner))
	}
	return res, ""
}

// requestsByPID is what each process served between two samples: the
// growth of data_segs_in on the connections present in both.
func requestsByPID(s0, s1 segsIn) map[int]float64 {
	out := map[int]float64{}
	for peer, b := range s1 {
		if a, ok := s0[peer]; ok && a.pid == b.pid {
			out[b.pid] += float64(b.segs - a.segs)
		}
	}
	return out
}

// topmost is the process of pids whose parent is not one of them: the
// master of a preforking server.
func topmost(pids []int) int {
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b)[i+2:]) // state ppid …
		if len(f) > 1 {
			if ppid, _ := strconv.Atoi(f[1]); !in[ppid] {
				return p
			}
		}
	}
	return 0
}

// ctxSwitches is the context switches (voluntary and not) of every
// thread of the processes so far (/proc/<pid>/task/*/status; a thread
// that ended no longer counts).
func ctxSwitches(pids []int) float64 {
	var n float64
	for _, pid := range pids {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
					x, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
					n += x
				}
			}
		}
	}
	return n
}
