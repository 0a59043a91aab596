//go:build linux

package shim

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"github.com/preforkd/preforkd/internal/contract"
	"golang.org/x/sys/unix"
)

// Run is the exec shim: it sets LISTEN_PID to its own pid (os/exec
// cannot know the child's pid in advance), arranges to get SIGTERM when the
// master dies (an external worker cannot read the lifeline pipe), checks
// that the master did not die before that, and execs the command in its
// own place (same pid). The command is os.Args[1:]. Run returns only
// on failure.
func Run() error {
	// The parent-death signal is a per-thread attribute that execve keeps
	// only for the thread that calls it: set it and exec on one thread.
	runtime.LockOSThread()
	os.Unsetenv(contract.ExecShim)
	if len(os.Args) < 2 {
		return fmt.Errorf("exec shim: no command")
	}
	path, err := exec.LookPath(os.Args[1])
	if err != nil {
		return fmt.Errorf("exec shim: %w", err)
	}
	os.Setenv(contract.ListenPid, strconv.Itoa(os.Getpid()))
	master, _ := strconv.Atoi(os.Getenv(contract.MasterPid))
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGTERM), 0, 0, 0); err != nil {
		return fmt.Errorf("exec shim: PR_SET_PDEATHSIG: %w", err)
	}
	if master > 0 && os.Getppid() != master {
		return fmt.Errorf("exec shim: master %d is gone", master)
	}
	err = unix.Exec(path, os.Args[1:], os.Environ())
	return fmt.Errorf("exec shim: exec %q: %w", path, err)
}
