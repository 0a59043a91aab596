//go:build linux

package master

import (
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
)

// sweep handles the master's children that are not workers started by p
// (see descendants_linux.go): a zombie is reaped; a live process adopted
// from a worker's descent gets SIGTERM when first seen and SIGKILL once it
// has outlived the grace period. A worker's exit status belongs to its own
// cmd.Wait, so workers are never touched here (p.startMu makes
// start-and-record atomic with respect to this scan), and neither is anything in the
// master's own process group (a successor master, which tableflip waits
// for). While an upgrade runs nothing is touched. It returns how many
// processes it reaped and how many it signalled.
//
// The list comes from /proc rather than waitid(P_ALL, WNOWAIT), which
// would keep returning the first zombie — possibly a worker's — and never
// reach the others behind it.
func (p *execProcs) sweep(upgrading func() bool) (reaped, signalled int) {
	p.startMu.Lock()
	defer p.startMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if upgrading() {
		return 0, 0
	}
	own := unix.Getpgrp()
	now := time.Now()
	seen := map[int]bool{}
	for _, c := range children() {
		if p.live[c.pid] || c.pgid == own {
			continue
		}
		if c.zombie {
			var ws unix.WaitStatus
			if got, err := unix.Wait4(c.pid, &ws, unix.WNOHANG, nil); err == nil && got == c.pid {
				reaped++
			}
			continue
		}
		seen[c.pid] = true
		since, ok := p.adopted[c.pid]
		switch {
		case !ok:
			p.adopted[c.pid] = now
			unix.Kill(c.pid, unix.SIGTERM)
			signalled++
		case now.Sub(since) > p.grace:
			unix.Kill(c.pid, unix.SIGKILL)
			signalled++
		}
	}
	for pid := range p.adopted {
		if !seen[pid] {
			delete(p.adopted, pid)
		}
	}
	return reaped, signalled
}

// stopAdopted stops every adopted process left at the master's exit, after
// the workers are gone: SIGTERM, up to grace for them to exit, SIGKILL.
func (p *execProcs) stopAdopted() {
	never := func() bool { return false }
	deadline := time.Now().Add(p.grace)
	for {
		p.sweep(never)
		p.mu.Lock()
		left := len(p.adopted)
		p.mu.Unlock()
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			p.mu.Lock()
			for pid := range p.adopted {
				unix.Kill(pid, unix.SIGKILL)
			}
			p.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			p.sweep(never) // reap them
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runReaper sweeps on every SIGCHLD, and every second (signals coalesce,
// and an adopted process that ignores SIGTERM is due its SIGKILL), until
// quit is closed.
func (m *master) runReaper() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGCHLD)
	defer signal.Stop(sig)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-sig:
		case <-tick.C:
		case <-m.quit:
			return
		}
		reaped, signalled := m.procs.sweep(m.up.running)
		if signalled > 0 {
			m.log.Warn("stopping processes that workers left behind", "count", signalled)
		}
		if reaped > 0 {
			m.log.Debug("reaped orphaned processes", "count", reaped)
		}
	}
}
