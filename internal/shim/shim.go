// Package shim is the exec shim of external workers: the master starts
// each external worker as its own executable in the shim role, which sets
// LISTEN_PID to its own pid (os/exec cannot know a child's pid before it
// exists) and execs the command in its place. Every binary that can be a
// master calls Is first thing in main (package server does).
package shim

import (
	"os"

	"github.com/preforkd/preforkd/internal/contract"
)

// Is reports whether this process was started as the exec shim.
func Is() bool { return os.Getenv(contract.ExecShim) == "1" }
