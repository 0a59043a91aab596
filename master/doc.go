// Package master is the supervisor: it opens the listeners once (through
// tableflip, so that an upgraded master inherits them), loads the shared
// state, runs N worker slots, and hands everything to a new master on
// SIGHUP.
//
// A Go program does not call Run itself: package server's Run and Main run
// the master when the program is started by a user, and the app when the
// master started the program as a worker. Call Run directly only to
// supervise another program (Config.Command):
//
//	err := master.Run(ctx, master.Config{
//		Workers:     4,
//		Listen:      []listener.Spec{{Name: "http", Network: "tcp", Address: "127.0.0.1:8080"}},
//		MetricsAddr: "127.0.0.1:9100",
//		Command:     []string{"gunicorn", "app:app"},
//	})
//
// Without Command the workers are this executable run again with the same
// arguments; a main that calls Run unconditionally would make each worker a
// master, so Run refuses inside a worker (ErrInWorker), and the start then
// fails (see StartAttempts) with that message.
//
// # Supervision
//
// A worker is ready when it sends READY=1 to the master's notify socket;
// the master trusts a message only for the pid the kernel attaches to it
// (SO_PASSCRED). A dead worker that had been ready for StablePeriod is
// replaced at once; one that died earlier is replaced after a per-slot delay
// that starts at BackoffMin, doubles, is capped at BackoffMax and has ±20%
// jitter. While no worker has ever been ready, StartAttempts early deaths of
// one slot fail the start: the master stops and Run returns an error with
// the last worker's exit status and last line of output. Once any worker
// has been ready, the master never gives up on a slot. A ready worker silent
// for Heartbeat is SIGKILLed and replaced; so is one not ready within
// StartTimeout.
//
// # Signals
//
//	SIGHUP          upgrade (tableflip): a new master from the binary now at the path
//	SIGUSR1         rolling restart, one slot at a time
//	SIGTTIN/SIGTTOU one worker more / fewer
//	SIGTERM/SIGINT  graceful stop (SIGTERM to workers, Grace, SIGKILL); a second one stops fast
//	SIGQUIT         fast stop (SIGKILL to workers)
//
// # Upgrades
//
// On SIGHUP the master hands its listeners, metrics listener, control socket
// and its end of the succession link (a socketpair) to a new master
// (tableflip). The new master reads the generation, the run-time worker
// count and the restart and upgrade counters over the link, starts its own
// workers, announces its pid and calls Ready only when all are ready (which
// writes the pid file); the old master then tells systemd READY=1 (and
// MAINPID=<new pid> only when there is no pid file: systemd re-reads
// PIDFile= when its child exits, and so supervises the new master as a
// child), drains its workers, sends its final metrics totals over the
// link, and exits. A new
// master that exits, cannot be exec'd, or is not ready within UpgradeTimeout
// is killed (its workers follow through their lifeline pipe) and the old
// generation keeps serving.
//
// # Structure
//
// A master is a few parts, each owning its state and goroutines: its
// resources (every descriptor of the generation, opened and closed as one),
// the supervisor (slots and workers, behind the procs seam so that it is
// unit-tested without forking, and a clock seam so that its timing is tested
// without sleeping), the upgrade (tableflip behind a small interface, so that
// every outcome is unit-tested without exec), the succession link, the
// control server and the metrics server. The supervisor and the master's
// loop are both owner loops: one goroutine owns the state and runs the
// functions others hand it.
package master
