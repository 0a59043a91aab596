//go:build linux

package master

import "time"

// clock is the supervisor's seam for time: every deadline it computes and
// every wait it makes go through it, so that tests drive backoff, grace and
// heartbeat timing with a fake clock instead of sleeping.
type clock interface {
	now() time.Time
	newTimer(d time.Duration) clockTimer
}

// clockTimer is the part of *time.Timer the supervisor uses, and ResetAt:
// a deadline given as a time, not as a wait computed from an earlier
// reading of the clock (with a fake clock that moves between the reading
// and the Reset, the wait would end late by the move).
type clockTimer interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	ResetAt(t time.Time)
	Stop()
}

// realClock is the wall clock (monotonic readings).
type realClock struct{}

func (realClock) now() time.Time { return time.Now() }

func (realClock) newTimer(d time.Duration) clockTimer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }

// Reset floors the wait at 1ms, so that a deadline that somehow stays due
// cannot make the supervisor spin.
func (r realTimer) Reset(d time.Duration) { r.t.Reset(max(d, time.Millisecond)) }
func (r realTimer) ResetAt(t time.Time)   { r.Reset(time.Until(t)) }
func (r realTimer) Stop()                 { r.t.Stop() }

// now is the supervisor's current time.
func (s *supervisor) now() time.Time { return s.clk.now() }
