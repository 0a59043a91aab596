//go:build linux

package master

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"

	"golang.org/x/sys/unix"

	"github.com/preforkd/preforkd/internal/sockets"
	"github.com/preforkd/preforkd/listener"
)

// nbWorker is one real child started through execProcs. Its cleanup kills
// and reaps the child and closes the execProcs, also when the test fails.
type nbWorker struct {
	p      *execProcs
	exits  chan exitEvent
	pid    int
	reaped bool
}

func nbStart(t *testing.T, spec spawnSpec) *nbWorker {
	t.Helper()
	w := &nbWorker{exits: make(chan exitEvent)}
	w.p = newExecProcs(spec, w.exits, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(w.stop)
	pid, err := w.p.start(0, 1)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if pid <= 0 {
		t.Fatalf("start returned pid %d", pid)
	}
	w.pid = pid
	return w
}

// kill sends SIGKILL and returns the exit event execProcs reports.
func (w *nbWorker) kill(t *testing.T) exitEvent {
	t.Helper()
	if err := w.p.signal(w.pid, unix.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", w.pid, err)
	}
	select {
	case ev := <-w.exits:
		w.reaped = true
		return ev
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit event for pid %d", w.pid)
	}
	return exitEvent{}
}

func (w *nbWorker) stop() {
	if w.pid > 0 && !w.reaped {
		unix.Kill(w.pid, unix.SIGKILL)
		select {
		case <-w.exits:
			w.reaped = true
		case <-time.After(10 * time.Second):
			return // close would wait for the wait goroutine forever
		}
	}
	w.p.close()
}

func nbControl(t *testing.T, c syscall.Conn, fn func(fd uintptr)) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(fn); err != nil {
		t.Fatal(err)
	}
}

// nbNonblock reports whether O_NONBLOCK is set on the open file description
// behind the master's own net socket.
func nbNonblock(t *testing.T, c syscall.Conn) bool {
	t.Helper()
	fl, ferr := -1, error(nil)
	nbControl(t, c, func(fd uintptr) { fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if ferr != nil {
		t.Fatalf("F_GETFL: %v", ferr)
	}
	return fl&unix.O_NONBLOCK != 0
}

// nbCheckFd3 checks that the child holds the master's socket as fd 3.
func nbCheckFd3(t *testing.T, pid int, c syscall.Conn) {
	t.Helper()
	var own int
	nbControl(t, c, func(fd uintptr) { own = int(fd) })
	want, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", own))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", pid))
	if err != nil {
		t.Fatalf("child %d fd 3: %v", pid, err)
	}
	if !strings.HasPrefix(got, "socket:") || got != want {
		t.Errorf("child %d fd 3 is %q, want the listener %q", pid, got, want)
	}
}

// TestStartKeepsListenerNonblocking is the done-when item: starting a worker
// leaves the shared listening socket non-blocking.
func TestStartKeepsListenerNonblocking(t *testing.T) {
	sp, err := listener.Parse("http=tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	socks, err := sockets.Open(testutil.NewFds(), []listener.Spec{sp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sockets.Close(socks) })
	ln := socks[0].Listener().(syscall.Conn)
	if !nbNonblock(t, ln) {
		t.Fatalf("listener blocking before any start")
	}

	files := sockets.Files(socks)
	w := nbStart(t, spawnSpec{path: "/bin/sleep", args: []string{"sleep", "5"}, files: files, nonblock: files})

	if !nbNonblock(t, ln) {
		t.Errorf("starting a worker made the shared listening socket blocking")
	}
	nbCheckFd3(t, w.pid, ln)

	ev := w.kill(t)
	if ev.pid != w.pid || ev.status.signal != unix.SIGKILL {
		t.Errorf("exit event %+v, want pid %d killed by SIGKILL", ev, w.pid)
	}
	if !nbNonblock(t, ln) {
		t.Errorf("listener blocking after the worker ended")
	}
}

// TestStartRestoresNonblockOfNetFile covers the second line of defence: a
// hand-off file made by (*net.TCPListener).File, whose Fd (called by
// os.StartProcess) clears O_NONBLOCK, is put back when listed in nonblock.
// The case without nonblock is the control that shows the trap happens.
func TestStartRestoresNonblockOfNetFile(t *testing.T) {
	for _, tt := range []struct {
		name         string
		listed       bool
		wantNonblock bool
	}{
		{"listed in nonblock", true, true},
		{"not listed (control)", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			ln := l.(syscall.Conn)
			var own int
			nbControl(t, ln, func(fd uintptr) { own = int(fd) })
			t.Cleanup(func() { unix.SetNonblock(own, true) }) // runs before l.Close
			f, err := l.(*net.TCPListener).File()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })

			spec := spawnSpec{path: "/bin/sleep", args: []string{"sleep", "5"}, files: []*os.File{f}}
			if tt.listed {
				spec.nonblock = []*os.File{f}
			}
			w := nbStart(t, spec)
			if got := nbNonblock(t, ln); got != tt.wantNonblock {
				t.Errorf("after start: O_NONBLOCK %v, want %v", got, tt.wantNonblock)
			}
			nbCheckFd3(t, w.pid, ln)
			if ev := w.kill(t); ev.pid != w.pid {
				t.Errorf("exit event for pid %d, want %d", ev.pid, w.pid)
			}
		})
	}
}

// The lifeline pipe goes to every worker through ExtraFiles like the
// listeners: starting a worker must not switch it to blocking mode either,
// or a worker's read of it can no longer be interrupted (its Close hangs).
func TestStartKeepsLifelineNonblocking(t *testing.T) {
	var pfd [2]int
	if err := unix.Pipe2(pfd[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(pfd[0]), "lifeline"), os.NewFile(uintptr(pfd[1]), "lifeline-w")
	defer r.Close()
	defer w.Close()
	// The master's spawn spec lists the pipe only in files, as the
	// listeners' restore list does not cover it: the file itself must
	// keep its mode.
	nbStart(t, spawnSpec{path: "/bin/sleep", args: []string{"sleep", "5"}, files: []*os.File{r}})
	fl, err := unix.FcntlInt(uintptr(pfd[0]), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_NONBLOCK == 0 {
		t.Fatal("starting a worker made the lifeline pipe blocking")
	}
}
