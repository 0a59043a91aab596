//go:build linux

package state

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"
	"unsafe"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// The test binary doubles as a worker: with helperEnv set, TestMain runs
// one helper role instead of the tests (like os/exec's tests). The parent
// passes the region as fd 3 (Cmd.ExtraFiles[0]) and its size in sizeEnv.
const (
	helperEnv = "PREFORKD_STATE_TEST_HELPER"
	sizeEnv   = "PREFORKD_STATE_TEST_SIZE"
	helperFd  = 3
)

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(runHelper(role))
	}
	goleak.VerifyTestMain(m)
}

// runHelper plays a worker that mapped the region, and returns the exit
// code. Output on stdout is read by the parent test.
func runHelper(role string) int {
	size, err := strconv.ParseInt(os.Getenv(sizeEnv), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 3
	}
	m, err := MapFd(helperFd, size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 3
	}
	b := m.Bytes()
	switch role {
	case "write", "write-sigdfl":
		// No core dump for the crash we are about to cause.
		if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, "helper: prctl:", err)
			return 3
		}
		if role == "write-sigdfl" {
			if err := defaultSIGSEGV(); err != nil {
				fmt.Fprintln(os.Stderr, "helper: rt_sigaction:", err)
				return 3
			}
		}
		fmt.Printf("addr=%#x\n", uintptr(unsafe.Pointer(&b[0])))
		b[0] = 'X' // must fault
		fmt.Println("write succeeded")
		return 0
	case "touch":
		// Read every page, then hold the mapping until stdin closes.
		var sum byte
		for i := 0; i < len(b); i += 4096 {
			sum += b[i]
		}
		fmt.Printf("ready %d\n", sum)
		io.Copy(io.Discard, os.Stdin)
		return 0
	case "sum":
		// Read every byte, then report what maps them (see pageUse).
		sum := Checksum(b)
		u, err := readPageUse(uintptr(unsafe.Pointer(&b[0])))
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 3
		}
		fmt.Printf("sum=%016x %s\n", sum, u)
		return 0
	case "attack":
		for _, line := range attack(helperFd, b) {
			fmt.Println(line)
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "helper: unknown role %q\n", role)
	return 3
}

// defaultSIGSEGV sets the disposition of SIGSEGV back to SIG_DFL behind the
// Go runtime's back, so that a fault kills the process with the signal
// itself instead of the runtime's "fatal error: fault" and exit status 2.
// os/signal cannot do this: it never touches synchronous signals.
func defaultSIGSEGV() error {
	// struct sigaction as the kernel reads it: handler, flags, restorer,
	// mask. All zero means SIG_DFL, no flags, an empty mask, whatever the
	// architecture's field order.
	var act [4]uint64
	_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGSEGV),
		uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
