//go:build linux

package sockets

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/preforkd/preforkd/listener"

	"golang.org/x/sys/unix"
)

func mustParse(t *testing.T, in string) listener.Spec {
	t.Helper()
	sp, err := listener.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func mustOpen(t *testing.T, fds Fds, specs ...listener.Spec) []*Socket {
	t.Helper()
	socks, err := Open(fds, specs)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { Close(socks) })
	return socks
}

// rawConnOf returns the net-created socket the master keeps (listener or
// packet conn).
func rawConnOf(t *testing.T, s *Socket) syscall.Conn {
	t.Helper()
	switch {
	case s.ln != nil:
		return s.ln.(syscall.Conn)
	case s.pc != nil:
		return s.pc.(syscall.Conn)
	}
	t.Fatalf("socket %s holds neither a listener nor a packet conn", s.Spec)
	return nil
}

// netFd returns the descriptor number of a socket made by net, without
// calling Fd on anything.
func netFd(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// getfl returns F_GETFL of the descriptor behind a net socket or an
// *os.File (without calling its Fd, which would make it blocking).
func getfl(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fl, ferr := -1, error(nil)
	if err := rc.Control(func(u uintptr) { fl, ferr = unix.FcntlInt(u, unix.F_GETFL, 0) }); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatalf("F_GETFL: %v", ferr)
	}
	return fl
}

// fdInode returns "socket:[N]" for a descriptor of this process.
func fdInode(t *testing.T, fd int) string {
	t.Helper()
	s, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, "socket:[") {
		t.Fatalf("fd %d is %q, not a socket", fd, s)
	}
	return s
}
