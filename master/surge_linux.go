//go:build linux

package master

import (
	"errors"
	"time"
)

// Surge control (Config.UpgradeSurge): the new master starts at most N
// workers beyond the old generation's; each time they are all ready it
// asks the old master to retire as many of its own ("retire"), and starts
// one more for each that has exited ("retired"). At most workers+N worker
// processes run at any moment of the upgrade. If the upgrade fails, the
// old master starts the workers it retired again.

// ramp is a new master's side: how far its worker count has come.
type ramp struct {
	full, surge int
	pending     int // retires asked for and not yet done
}

// askRetire asks the predecessor to retire n workers.
func (h *link) askRetire(n int) error {
	for i := 0; i < n; i++ {
		if err := h.toPred(linkMsg{Attempt: h.got.Attempt, Kind: "retire"}, time.Second); err != nil {
			return err
		}
	}
	return nil
}

// rampStep runs in the loop when every worker of this master is ready;
// true means the ramp is done (the full count is ready).
func (m *master) rampStep() bool {
	r := m.ramp
	var desired int
	m.sup.do(func() { desired = m.sup.desired })
	if desired >= r.full {
		return true
	}
	if r.pending > 0 {
		return false
	}
	n := min(r.surge, r.full-desired)
	if err := m.res.link.askRetire(n); err != nil {
		// Without the old master's help, start the rest at once.
		m.log.Warn("cannot ask the old master to retire workers; starting the rest at once", "err", err)
		m.sup.do(func() { m.sup.scale(r.full) })
		return false
	}
	r.pending += n
	m.log.Info("upgrade surge: asked the old generation to retire workers", "count", n, "ready_here", desired, "of", r.full)
	return false
}

// onRetired starts one more worker for an old one that has exited.
func (m *master) onRetired() {
	r := m.ramp
	if r.pending > 0 {
		r.pending--
	}
	m.sup.do(func() {
		if m.sup.desired < r.full {
			m.sup.scale(m.sup.desired + 1)
		}
	})
}

// retireOne is the old master's side of "retire": it stops its highest
// slot's worker (its slot count shrinks by one) and returns its pid.
func (m *master) retireOne() (int, error) {
	pid := 0
	var err error
	ok := m.sup.do(func() {
		if m.sup.desired <= 1 || m.up.stopping {
			err = errors.New("no worker left to retire")
			return
		}
		if w := m.sup.slots[len(m.sup.slots)-1].cur; w != nil {
			pid = w.pid
		}
		m.log.Info("upgrade surge: retiring one worker of this generation for the new one", "pid", pid)
		err = m.sup.scale(m.sup.desired - 1)
	})
	if !ok {
		return 0, errStopping
	}
	if err == nil {
		m.surgeRetired.Add(1)
	}
	return pid, err
}

// awaitExit waits until pid is no longer one of the supervisor's workers
// (or the master closes).
func (m *master) awaitExit(pid int) {
	for {
		gone := true
		if !m.sup.do(func() { _, alive := m.sup.workers[pid]; gone = !alive }) || gone {
			return
		}
		select {
		case <-m.quit:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// restoreSurge starts again the workers a failed upgrade's surge retired.
func (m *master) restoreSurge() {
	n := int(m.surgeRetired.Swap(0))
	if n == 0 {
		return
	}
	m.log.Info("upgrade failed: starting again the workers the surge retired", "count", n)
	m.sup.do(func() {
		if err := m.sup.scale(m.sup.desired + n); err != nil {
			m.log.Warn("cannot start the retired workers again", "err", err)
		}
	})
}
