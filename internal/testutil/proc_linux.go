//go:build linux

package testutil

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Proc is one process of /proc.
type Proc struct {
	PID, PPID    int
	State        byte   // R, S, Z, …
	UTime, STime uint64 // clock ticks (USER_HZ, 100 on Linux)
}

// ProcInfo reads /proc/<pid>/stat.
func ProcInfo(pid int) (Proc, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Proc{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // comm may hold spaces and parentheses
	if i < 0 {
		return Proc{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return Proc{}, false
	}
	p := Proc{PID: pid, State: f[0][0]}
	p.PPID, _ = strconv.Atoi(f[1])
	p.UTime, _ = strconv.ParseUint(f[11], 10, 64)
	p.STime, _ = strconv.ParseUint(f[12], 10, 64)
	return p, true
}

// Procs is every process.
func Procs() []Proc {
	ents, _ := os.ReadDir("/proc")
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := ProcInfo(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	p, ok := ProcInfo(pid)
	return ok && p.State != 'Z'
}

// Children are the live processes whose parent is pid, sorted.
func Children(pid int) []int {
	var out []int
	for _, p := range Procs() {
		if p.PPID == pid && p.State != 'Z' {
			out = append(out, p.PID)
		}
	}
	sort.Ints(out)
	return out
}

// Descendants are every process below pid (zombies included), deepest last.
func Descendants(pid int) []int {
	all := Procs()
	var out []int
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		for _, c := range all {
			if c.PPID == queue[0] {
				out = append(out, c.PID)
				queue = append(queue, c.PID)
			}
		}
	}
	return out
}

// Live keeps the pids that are alive.
func Live(pids []int) []int {
	var out []int
	for _, p := range pids {
		if Alive(p) {
			out = append(out, p)
		}
	}
	sort.Ints(out)
	return out
}

// Zombies are the zombie processes whose parent is one of parents.
func Zombies(parents ...int) []int {
	set := map[int]bool{}
	for _, p := range parents {
		set[p] = true
	}
	var out []int
	for _, p := range Procs() {
		if p.State == 'Z' && set[p.PPID] {
			out = append(out, p.PID)
		}
	}
	return out
}

// BecomeSubreaper makes this process a child subreaper: the masters an
// upgrade starts (orphaned when the old one exits) and the workers of a
// killed master are re-parented to it, so that it can count, end and reap
// them.
func BecomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", err)
	}
	return nil
}

// ReapOrphans reaps this process's zombie children for which ours is
// false (those that exec.Cmd started are reaped by their Wait).
func ReapOrphans(ours func(pid int) bool) {
	me := os.Getpid()
	for _, p := range Procs() {
		if p.PPID == me && p.State == 'Z' && !ours(p.PID) {
			var ws unix.WaitStatus
			unix.Wait4(p.PID, &ws, unix.WNOHANG, nil)
		}
	}
}
