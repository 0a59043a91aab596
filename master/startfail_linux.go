//go:build linux

package master

import (
	"errors"
	"fmt"
)

// failStart ends a start that cannot succeed: no worker has ever been
// ready, and slot sl's workers died early startAttempts times. Systemd and
// gunicorn fail such a service too, so that the failure shows; once any
// worker has been ready the supervisor never gives up.
func (s *supervisor) failStart(sl *slot, w *worker, status, lastLine string) {
	msg := fmt.Sprintf("the start failed: the workers of slot %d died %d times before any worker was ever ready (last: pid %d %s", sl.index, sl.failures, w.pid, status)
	if lastLine != "" {
		msg += fmt.Sprintf("; its last line: %q", lastLine)
	}
	msg += ")"
	if w.killReason == "start-timeout" {
		msg += "; " + s.readyHint()
	}
	s.err = errors.New(msg)
	s.log.Error(msg)
	s.stop(false) // no worker ever served: nothing to drain
}

// readyHint says how a worker becomes ready.
func (s *supervisor) readyHint() string {
	if s.cfg.external {
		return "the command must send READY=1 to $NOTIFY_SOCKET (sd_notify), or set -ready-delay"
	}
	return "call w.Ready() (or serve with server.ServeHTTP or server.Serve)"
}
