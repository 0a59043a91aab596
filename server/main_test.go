package server

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// result is the outcome of a call run in its own goroutine.
type result struct {
	start time.Time
	end   time.Time // set before done is closed
	err   error     // set before done is closed
	done  chan struct{}
}

// async runs f in a goroutine. The test's cleanup first calls stop (which
// must make f return), then waits for f: no goroutine outlives the test.
func async(t *testing.T, f func() error, stop func()) *result {
	r := &result{start: time.Now(), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = f()
		r.end = time.Now()
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Errorf("a goroutine of the test did not return after cleanup")
		}
	})
	return r
}

// wait returns f's error, and fails the test when f does not return
// within timeout.
func (r *result) wait(t *testing.T, timeout time.Duration, what string) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		t.Fatalf("%s did not return within %v", what, timeout)
		return nil
	}
}

// returned reports whether f has returned.
func (r *result) returned() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}
