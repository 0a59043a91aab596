package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// What §1 reads from /proc and from the servers' sockets under load:
// which processes serve a port, the CPU time and context switches they
// used, and how many requests each keep-alive connection carried.

// serverPIDs are the bench's descendants that hold the socket listening on
// 127.0.0.1:port: a preforkd master and its workers, a prefork master and
// its children, or the one process of a plain server. Their CPU time is
// the server's.
func serverPIDs(port int) []int {
	owners := socketOwners()
	seen := map[int]bool{}
	var out []int
	for _, ino := range tcpSockets(port, tcpListen) {
		for _, pid := range owners[ino] {
			if !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
		}
	}
	sort.Ints(out)
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

// sampleSegsIn reads TCP_INFO of every established TCP connection on
// 127.0.0.1:port that one of pids holds: each socket is duplicated out of
// its process with pidfd_getfd(2) (Linux ≥ 5.6; the bench is the servers'
// ancestor, so it may), read and closed. It touches only the servers'
// own descriptors: /proc/net/tcp lists every socket of the machine,
// TIME_WAIT included, and after the fresh-connection runs (tens of
// thousands of them) samples read from it came back empty in 7 of 80
// runs.
func sampleSegsIn(port int, pids []int) segsIn {
	res := segsIn{}
	for _, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, _ := os.ReadDir(dir)
		pidfd := -1
		for _, e := range ents {
			l, err := os.Readlink(dir + "/" + e.Name())
			if err != nil || !strings.HasPrefix(l, "socket:[") {
				continue
			}
			if pidfd < 0 {
				if pidfd, err = unix.PidfdOpen(pid, 0); err != nil {
					break
				}
			}
			fd, _ := strconv.Atoi(e.Name())
			if peer, segs, ok := established(pidfd, fd, port); ok {
				res[peer] = struct {
					pid  int
					segs int64
				}{pid, segs}
			}
		}
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
	}
	return res
}

// established reads descriptor fd of the process behind pidfd: if it is
// an established TCP connection on local port, its peer address and
// tcpi_data_segs_in.
func established(pidfd, fd, port int) (peer string, segs int64, ok bool) {
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return "", 0, false
	}
	defer unix.Close(dup)
	local, err := unix.Getsockname(dup)
	if err != nil {
		return "", 0, false
	}
	if l, isV4 := local.(*unix.SockaddrInet4); !isV4 || l.Port != port {
		return "", 0, false
	}
	info, err := unix.GetsockoptTCPInfo(dup, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.State != 1 { // TCP_ESTABLISHED
		return "", 0, false
	}
	remote, err := unix.Getpeername(dup)
	if err != nil {
		return "", 0, false
	}
	r, isV4 := remote.(*unix.SockaddrInet4)
	if !isV4 {
		return "", 0, false
	}
	return fmt.Sprintf("%v:%d", r.Addr, r.Port), int64(info.Data_segs_in), true
}

// perPID counts a sample's connections by process, largest first.
func (s segsIn) perPID() []int {
	by := map[int]int{}
	for _, c := range s {
		by[c.pid]++
	}
	var out []int
	for _, n := range by {
		out = append(out, n)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(out)))
	return out
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
