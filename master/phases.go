package master

import (
	"log/slog"
	"time"
)

// processInit is when this package was initialised: after the Go runtime
// and every package it imports had started. At an upgrade, the time from
// the old master's SIGHUP to it is the exec of the new binary and the
// runtime's start.
var processInit = time.Now()

// phases are the moments of a master's start, for the "master ready" log
// line (and so for the bench's breakdown of an upgrade). began is the old
// master's start of the upgrade (zero at a first start).
type phases struct {
	began   time.Time // old master: upgrade begins (from the offer)
	init    time.Time // package master initialised (runtime and imports done)
	run     time.Time // Run called (the program's main and flags done)
	opened  time.Time // descriptors opened, hand-over received
	loaded  time.Time // state region built or taken over
	spawned time.Time // every first worker's process started
	ready   time.Time // every first worker ready
	reused  bool      // the predecessor's state region was taken over
}

// attrs are the phases as log attributes: each phase's duration, from the
// previous moment.
func (p phases) attrs() []any {
	ms := func(a, b time.Time) slog.Attr {
		return slog.Duration("", b.Sub(a).Round(10*time.Microsecond))
	}
	var out []any
	add := func(name string, a, b time.Time) {
		if !a.IsZero() && !b.IsZero() {
			at := ms(a, b)
			at.Key = name
			out = append(out, at)
		}
	}
	add("phase_exec", p.began, p.init) // SIGHUP handling, fork+exec, runtime and package init
	add("phase_main", p.init, p.run)   // the program's main until master.Run
	add("phase_open", p.run, p.opened)
	add("phase_state", p.opened, p.loaded)
	add("phase_spawn", p.loaded, p.spawned)
	add("phase_workers", p.spawned, p.ready)
	if !p.began.IsZero() {
		out = append(out, slog.Bool("state_reused", p.reused))
	}
	return out
}
