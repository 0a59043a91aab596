// Package master is the supervisor: it opens the listeners once (through
// tableflip, so that an upgraded master inherits them), loads the shared
// state, and runs N worker slots.
//
//	err := master.Run(ctx, master.Config{
//		Workers:     4,
//		Listen:      []listener.Spec{{Name: "http", Network: "tcp", Address: "127.0.0.1:8080"}},
//		MetricsAddr: "127.0.0.1:9100",
//	})
//
// # Supervision
//
// A worker is this executable exec'd again in the worker role (or, with
// Config.Command, the exec shim followed by that command). It is ready when
// it sends READY=1 to the master's notify socket; the master trusts a
// message only for the pid the kernel attaches to it (SO_PASSCRED). A dead
// worker that had been ready for StablePeriod is replaced at once; one that
// died earlier is replaced after a per-slot delay that starts at BackoffMin,
// doubles, is capped at BackoffMax and has ±20% jitter. The master never
// gives up on a slot. A ready worker silent for Heartbeat is SIGKILLed and
// replaced; so is one not ready within StartTimeout.
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
// and a hand-off socket to a new master (tableflip). The new master reads the
// generation and run-time worker count over the hand-off socket, starts its
// own workers, and calls Ready only when all are ready; the old master then
// tells systemd MAINPID=<new pid> and READY=1, drains its workers, and exits.
// A new master that exits, cannot be exec'd, or is not ready within
// UpgradeTimeout is killed (its workers follow through their lifeline pipe)
// and the old generation keeps serving.
//
// Every process start and signal of the supervisor goes through a small
// seam (procs), so that the supervision logic is unit-tested without
// forking.
package master
