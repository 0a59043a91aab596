//go:build linux

package master

// Descendants: every process a worker starts ends with the worker, and at
// the latest with the master, as under systemd, which stops a unit's whole
// cgroup.
//
// Two nets catch them (no cgroup: a master may run where it cannot make
// one; process groups and a subreaper work everywhere):
//   - A worker runs in a process group of its own (its pid). When the
//     worker has exited, the master stops that group: SIGTERM, then
//     SIGKILL after the grace period.
//   - A descendant that left the group (setsid, a daemon's double fork) is
//     re-parented to the master when its parent dies, because the master is
//     a child subreaper (PR_SET_CHILD_SUBREAPER). The reaper stops every
//     such adopted process the same way, and reaps it.
//
// The master tells adopted processes from children of its own by process
// group: a successor master started by tableflip shares the master's group
// and is never touched; workers are known by pid.

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// becomeSubreaper makes the master the parent of every orphaned
// descendant (so it can stop them) instead of init.
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// stopGroup stops what is left of the process group pgid (a worker's,
// after the worker exited): SIGTERM, then SIGKILL when members remain
// after grace. It returns whether there was anything to stop.
func stopGroup(pgid int, grace time.Duration) bool {
	if err := unix.Kill(-pgid, unix.SIGTERM); err != nil {
		return false // ESRCH: the group is empty
	}
	deadline := time.Now().Add(grace)
	for wait := 5 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, 100*time.Millisecond) {
		time.Sleep(wait)
		if unix.Kill(-pgid, 0) != nil {
			return true
		}
	}
	unix.Kill(-pgid, unix.SIGKILL)
	return true
}

// child is one process whose parent is the master.
type child struct {
	pid, pgid int
	zombie    bool
}

// children lists the master's child processes, from each thread's
// /proc/self/task/<tid>/children (a re-parented orphan is listed under one
// of them), or by a scan of /proc where that file is missing.
func children() []child {
	var pids []int
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	if len(tasks) == 0 {
		return scanChildren()
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range bytes.Fields(b) {
			if pid, err := strconv.Atoi(string(s)); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	var out []child
	for _, pid := range pids {
		if c, ok := readChild(pid); ok {
			out = append(out, c.child)
		}
	}
	return out
}

func scanChildren() []child {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	me := os.Getpid()
	var out []child
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if c, ok := readChild(pid); ok && c.ppid == me {
			out = append(out, c.child)
		}
	}
	return out
}

type procStat struct {
	child
	ppid int
}

// readChild reads pid's state, parent and process group from
// /proc/<pid>/stat.
func readChild(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(b[i+1:]) // state ppid pgrp ...
	if len(f) < 3 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgid, err2 := strconv.Atoi(string(f[2]))
	if err1 != nil || err2 != nil {
		return procStat{}, false
	}
	return procStat{child: child{pid: pid, pgid: pgid, zombie: f[0][0] == 'Z'}, ppid: ppid}, true
}
