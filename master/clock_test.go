//go:build linux

package master

import (
	"sync"
	"time"
)

// fakeClock is a clock that moves only when the test advances it.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	timers []*fakeTimer
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) newTimer(d time.Duration) clockTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clk: c, c: make(chan time.Time, 1)} // as a timer's: one value
	c.timers = append(c.timers, t)
	t.resetLocked(d)
	return t
}

// advance moves the clock forward and fires every timer that is due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	for _, t := range c.timers {
		if t.armed && !t.at.After(c.t) {
			t.armed = false
			select {
			case t.c <- c.t:
			default:
			}
		}
	}
}

// jump moves the clock forward without firing timers: the next event the
// supervisor sees is one the test sends, as after a pause when queued
// heartbeats are read before the late timer.
func (c *fakeClock) jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fakeTimer struct {
	clk   *fakeClock
	c     chan time.Time
	at    time.Time
	armed bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Reset(d time.Duration) {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	t.resetLocked(d)
}

func (t *fakeTimer) ResetAt(at time.Time) {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	t.resetLocked(at.Sub(t.clk.t))
}

func (t *fakeTimer) resetLocked(d time.Duration) {
	select { // like Go 1.23+ timers: no stale value after Reset
	case <-t.c:
	default:
	}
	t.at, t.armed = t.clk.t.Add(d), true
	if d <= 0 { // due already: the fake clock does not move by itself
		t.armed = false
		t.c <- t.clk.t
	}
}

func (t *fakeTimer) Stop() {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	t.armed = false
}
