//go:build linux

package master

import (
	"bytes"
	"os"
	"os/signal"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// reapOrphans reaps zombie children of this process that are not workers
// started by p: as PID 1 (in a container), orphaned grandchildren are
// re-parented to us. A worker's exit status belongs to its own cmd.Wait, so
// workers are never reaped here (p.mu makes start-and-record atomic with
// respect to this scan). While an upgrade runs, tableflip waits for the new
// master itself, so nothing is reaped then. It returns how many it reaped.
//
// The scan reads /proc rather than calling waitid(P_ALL, WNOWAIT), which
// would keep returning the first zombie — possibly a worker's — and never
// reach the orphans behind it.
func (p *execProcs) reapOrphans(upgrading func() bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if upgrading() {
		return 0
	}
	me := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || p.live[pid] {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 2 || f[0][0] != 'Z' || string(f[1]) != strconv.Itoa(me) {
			continue
		}
		var ws unix.WaitStatus
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil && got == pid {
			n++
		}
	}
	return n
}

// runReaper reaps orphans on every SIGCHLD (and every few seconds, since
// signals coalesce) until quit is closed.
func (m *master) runReaper() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGCHLD)
	defer signal.Stop(sig)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-sig:
		case <-tick.C:
		case <-m.quit:
			return
		}
		if n := m.procs.reapOrphans(m.up.running); n > 0 {
			m.log.Debug("reaped orphaned processes", "count", n)
		}
	}
}
