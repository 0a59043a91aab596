//go:build linux

package master

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// canaryStage is a new master's canary (see CanaryConfig): the supervisor
// starts with one slot; when its worker is ready the stage's window
// begins, with the old and the new generation's HTTP figures as the
// baseline; at its end the canary is judged. Its worker's exit before
// then fails it at once. The master's loop drives it; the exit hook only
// reports.
type canaryStage struct {
	dur     time.Duration
	full    int         // the worker count to scale to when it passes
	pending atomic.Bool // armed until judged: an exit fails the canary
	readyAt atomic.Int64
	failed  chan linkMsg // from the exit hook (size 1: the first exit decides)

	oldStart, newStart httpFigures
	oldOK              bool // the old generation's figures could be read
}

func newCanaryStage(d time.Duration, full int) *canaryStage {
	c := &canaryStage{dur: d, full: full, failed: make(chan linkMsg, 1)}
	c.pending.Store(true)
	return c
}

// exited is the exit hook's part: the canary worker exited before it was
// judged.
func (c *canaryStage) exited(pid int, status string) {
	if !c.pending.Load() {
		return
	}
	msg := linkMsg{Cause: causeStart, Reason: fmt.Sprintf("the canary worker (pid %d) exited before it was ready: %s", pid, status)}
	if at := c.readyAt.Load(); at != 0 {
		up := time.Since(time.Unix(0, at)).Round(10 * time.Millisecond)
		msg = linkMsg{Cause: causeCrash, Reason: fmt.Sprintf("the canary worker (pid %d) exited after serving %v: %s", pid, up, status)}
	}
	select {
	case c.failed <- msg:
	default:
	}
}

// beginCanary starts the window once the canary worker is ready; the
// returned channel fires at its end.
func (m *master) beginCanary() <-chan time.Time {
	c := m.canary
	c.readyAt.Store(time.Now().UnixNano())
	var err error
	if c.oldStart, err = m.oldFigures(); err != nil {
		m.log.Warn("cannot read the old generation's HTTP figures; the canary is judged on its exits only", "err", err)
	} else {
		c.oldOK = true
	}
	c.newStart = m.newFigures()
	m.log.Info("canary serving beside the old generation", "for", c.dur)
	return time.After(c.dur)
}

// canaryExtend is how much longer a canary that has not served enough
// requests to be judged serves before the next look.
func (c *canaryStage) extendBy() time.Duration { return max(c.dur/2, 200*time.Millisecond) }

// judgeCanary ends the window: the figures over it decide. A canary of an
// app that reports HTTP figures (the old generation does) but that has
// served fewer than MinRequests gets its window extended (wait > 0), up
// to 3 × the duration and within the upgrade timeout; after that, or for
// an app without HTTP figures, its exits alone decide.
func (m *master) judgeCanary() (rollback linkMsg, failed bool, wait time.Duration) {
	c := m.canary
	newEnd := m.newFigures()
	oldEnd, err := m.oldFigures()
	canary := newEnd.since(c.newStart)
	if c.oldOK && err == nil && oldEnd.seen && canary.requests < float64(m.cfg.Canary.MinRequests) {
		served := time.Since(time.Unix(0, c.readyAt.Load()))
		// Leave the rest of the start room within -upgrade-timeout.
		margin := min(5*time.Second, m.cfg.UpgradeTimeout/5)
		limit := min(3*c.dur, time.Until(m.started.Add(m.cfg.UpgradeTimeout-margin))+served)
		if ext := c.extendBy(); served+ext <= limit {
			m.log.Info("canary window extended: too few requests yet to judge", "requests", canary.requests, "want", m.cfg.Canary.MinRequests, "by", ext)
			return linkMsg{}, false, ext
		}
	}
	c.pending.Store(false)
	select {
	case rb := <-c.failed: // it exited just now
		return rb, true, 0
	default:
	}
	if !c.oldOK || err != nil {
		m.log.Info("canary passed (judged on its exits only: the old generation's figures could not be read)", "canary", canary.summary())
		return linkMsg{}, false, 0
	}
	old := oldEnd.since(c.oldStart)
	cause, reason, note := m.cfg.Canary.rule().judge(canary, old)
	if cause != "" {
		return linkMsg{Cause: cause, Reason: reason}, true, 0
	}
	args := []any{"canary", canary.summary(), "old_generation", old.summary()}
	if note != "" {
		args = append(args, "note", note)
	}
	m.log.Info("canary passed; starting the other workers", args...)
	return linkMsg{}, false, 0
}

// oldFigures are the old generation's HTTP figures now (its master scrapes
// its workers first).
func (m *master) oldFigures() (httpFigures, error) {
	q := m.res.link.predQuery
	if q == nil {
		return httpFigures{}, errors.New("no link to the old master")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	carry, err := q(ctx, "fresh")
	if err != nil {
		return httpFigures{}, err
	}
	return figuresOf(carry), nil
}

// newFigures are this generation's (the canary's) HTTP figures now.
func (m *master) newFigures() httpFigures {
	m.agg.Gather()
	return figuresOf(m.agg.LiveTotals())
}

// passCanary scales to the full worker count; the loop then polls until
// every worker is ready.
func (m *master) passCanary() {
	m.sup.do(func() {
		if err := m.sup.scale(m.canary.full); err != nil {
			m.log.Warn("cannot start the other workers after the canary", "err", err)
		}
	})
}

// allReady reports whether every slot has a ready worker.
func (m *master) allReady() bool {
	n, want := 0, 0
	m.sup.do(func() { n, want = m.sup.readyCount(), m.sup.desired })
	return n >= want
}

// rollBack ends a new master whose canary failed: it tells the old master
// why, drains its canary, and returns the error Run returns.
func (m *master) rollBack(rb linkMsg) error {
	m.canary.pending.Store(false)
	m.log.Error("canary failed; rolling back to the running generation", "cause", rb.Cause, "reason", rb.Reason)
	if err := m.res.link.rollback(rb.Cause, rb.Reason); err != nil {
		m.log.Warn("cannot tell the old master why", "err", err)
	}
	if err := m.finish(false); err != nil {
		return err
	}
	return fmt.Errorf("canary failed, upgrade rolled back: %s", rb.Reason)
}
