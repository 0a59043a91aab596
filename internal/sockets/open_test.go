//go:build linux

package sockets

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
	"github.com/preforkd/preforkd/listener"

	"golang.org/x/sys/unix"
)

var _ Fds = (*testutil.Fds)(nil)

func TestOpenNewSockets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.sock")
	specs := []listener.Spec{
		mustParse(t, "web=tcp://127.0.0.1:0"),
		mustParse(t, "dns=udp://127.0.0.1:0"),
		mustParse(t, "admin=unix://"+path),
	}
	fds := testutil.NewFds()
	socks := mustOpen(t, fds, specs...)

	if len(socks) != len(specs) {
		t.Fatalf("got %d sockets, want %d", len(socks), len(specs))
	}
	wantAdded := []string{"listener tcp 127.0.0.1:0", "packet udp 127.0.0.1:0", "listener unix " + path}
	if got := fds.Added(); strings.Join(got, "|") != strings.Join(wantAdded, "|") {
		t.Errorf("added to fds: %q, want %q", got, wantAdded)
	}

	files := Files(socks)
	if len(files) != len(specs) {
		t.Fatalf("Files: %d files, want %d", len(files), len(specs))
	}
	seen := map[int]bool{}
	for i, s := range socks {
		if s.Spec != specs[i] {
			t.Errorf("socket %d: spec %+v, want %+v (spec order)", i, s.Spec, specs[i])
		}
		if s.Inherited {
			t.Errorf("socket %d (%s): Inherited true for a socket bound anew", i, s.Spec)
		}
		if files[i] != s.File() {
			t.Errorf("Files()[%d] is not socket %d's File()", i, i)
		}
		if files[i].Name() != specs[i].Name {
			t.Errorf("Files()[%d].Name() = %q, want %q", i, files[i].Name(), specs[i].Name)
		}
		if (s.Listener() == nil) != specs[i].Packet() {
			t.Errorf("socket %d (%s): Listener() = %v", i, s.Spec, s.Listener())
		}
		own := netFd(t, rawConnOf(t, s))
		fd := int(files[i].Fd())
		if fd == own || seen[fd] || seen[own] {
			t.Errorf("socket %d: File fd %d is not a distinct descriptor (net's fd %d, seen %v)", i, fd, own, seen)
		}
		seen[fd], seen[own] = true, true
		if a, b := fdInode(t, fd), fdInode(t, own); a != b {
			t.Errorf("socket %d: File is %s but the listener is %s", i, a, b)
		}
		// The hand-off file is bound where the spec's socket is bound.
		sa, err := unix.Getsockname(fd)
		if err != nil {
			t.Fatal(err)
		}
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			var addr string
			if s.ln != nil {
				addr = s.ln.Addr().String()
			} else {
				addr = s.pc.LocalAddr().String()
			}
			if got := fmt.Sprintf("127.0.0.1:%d", sa.Port); got != addr {
				t.Errorf("socket %d: File bound to %s, net socket to %s", i, got, addr)
			}
		case *unix.SockaddrUnix:
			if sa.Name != path {
				t.Errorf("socket %d: File bound to %q, want %q", i, sa.Name, path)
			}
		default:
			t.Errorf("socket %d: unexpected address %T", i, sa)
		}
		fdflags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || fdflags&unix.FD_CLOEXEC == 0 {
			t.Errorf("socket %d: File fd flags %#x, %v; want FD_CLOEXEC (only ExtraFiles clears it in the child)", i, fdflags, err)
		}
	}
	if typ, _ := unix.GetsockoptInt(int(files[1].Fd()), unix.SOL_SOCKET, unix.SO_TYPE); typ != unix.SOCK_DGRAM {
		t.Errorf("udp File SO_TYPE = %d, want SOCK_DGRAM", typ)
	}

	// They are real sockets: the tcp and unix ones accept connections.
	for _, i := range []int{0, 2} {
		c, err := net.DialTimeout(specs[i].Network, socks[i].Listener().Addr().String(), 5*time.Second)
		if err != nil {
			t.Errorf("dial %s: %v", specs[i], err)
			continue
		}
		c.Close()
	}

	// Close is idempotent and closes the hand-off files too.
	for _, s := range socks {
		if err := s.Close(); err != nil {
			t.Errorf("Close %s: %v", s.Spec, err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close %s: %v", s.Spec, err)
		}
	}
	if _, err := files[0].Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("File after Close: Stat error %v, want os.ErrClosed", err)
	}
	// The unix socket file stays for the next master (SetUnlinkOnClose(false)).
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("unix socket file after Close: %v, %v; want it kept", fi, err)
	}
}

func TestOpenAbstractUnix(t *testing.T) {
	name := fmt.Sprintf("@preforkd-listener-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	socks := mustOpen(t, testutil.NewFds(), mustParse(t, "abs=unix://"+name))
	c, err := net.DialTimeout("unix", name, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	c.Close()
	sa, err := unix.Getsockname(int(socks[0].File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := sa.(*unix.SockaddrUnix); !ok || u.Name != name {
		t.Errorf("File bound to %#v, want %q", sa, name)
	}
}

func TestOpenUsesInherited(t *testing.T) {
	prevLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer prevLn.Close()
	prevPc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer prevPc.Close()

	// The previous master's sockets are found under the spec's own address.
	fds := testutil.NewFds()
	fds.PresetListener("tcp", "127.0.0.1:8080", prevLn)
	fds.PresetPacketConn("udp", "127.0.0.1:5353", prevPc)
	socks := mustOpen(t, fds,
		mustParse(t, "web=tcp://127.0.0.1:8080"),
		mustParse(t, "dns=udp://127.0.0.1:5353"))

	if added := fds.Added(); len(added) != 0 {
		t.Errorf("inherited sockets were added again: %q", added)
	}
	for i, s := range socks {
		if !s.Inherited {
			t.Errorf("socket %d (%s): Inherited false", i, s.Spec)
		}
	}
	if socks[0].Listener() != prevLn {
		t.Errorf("tcp socket does not use the inherited listener")
	}
	if socks[1].pc != prevPc {
		t.Errorf("udp socket does not use the inherited packet conn")
	}
	// The hand-off files are duplicates of the inherited sockets.
	if a, b := fdInode(t, int(socks[0].File().Fd())), fdInode(t, netFd(t, prevLn.(syscall.Conn))); a != b {
		t.Errorf("tcp File is %s, inherited listener %s", a, b)
	}
	if a, b := fdInode(t, int(socks[1].File().Fd())), fdInode(t, netFd(t, prevPc.(syscall.Conn))); a != b {
		t.Errorf("udp File is %s, inherited conn %s", a, b)
	}
}

func TestOpenRemovesStaleUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stale.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false) // a killed master leaves its file behind
	old.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("stale socket file not left behind: %v, %v", fi, err)
	}
	if _, err := net.Dial("unix", path); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial stale socket: %v, want ECONNREFUSED", err)
	}

	fds := testutil.NewFds()
	socks := mustOpen(t, fds, mustParse(t, "admin=unix://"+path))
	if socks[0].Inherited {
		t.Errorf("Inherited true for a socket bound anew")
	}
	if got := fds.Added(); len(got) != 1 || got[0] != "listener unix "+path {
		t.Errorf("added %q", got)
	}
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("dial re-bound socket: %v", err)
	}
	c.Close()
}

func TestOpenLiveUnixSocketInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live.sock")
	live, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()

	fds := testutil.NewFds()
	sp := mustParse(t, "admin=unix://"+path)
	socks, err := Open(fds, []listener.Spec{sp})
	if err == nil {
		Close(socks)
		t.Fatalf("Open over a live socket succeeded")
	}
	if !errors.Is(err, ErrInUse) {
		t.Errorf("error %v does not wrap ErrInUse", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the path %s", err, path)
	}
	if !strings.Contains(err.Error(), sp.String()) {
		t.Errorf("error %q does not name the spec %s", err, sp)
	}
	if added := fds.Added(); len(added) != 0 {
		t.Errorf("added %q", added)
	}
	// The live listener keeps its file and keeps answering.
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("the live socket no longer answers: %v", err)
	}
	c.Close()
}

func TestOpenPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	sp := mustParse(t, "web=tcp://"+busy.Addr().String())
	socks, err := Open(testutil.NewFds(), []listener.Spec{sp})
	if err == nil {
		Close(socks)
		t.Fatalf("Open on a busy port succeeded")
	}
	if !strings.Contains(err.Error(), sp.String()) {
		t.Errorf("error %q does not name the spec %s", err, sp)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v does not wrap EADDRINUSE", err)
	}
}

func TestOpenFailureClosesEarlierSockets(t *testing.T) {
	// A free port for the first spec.
	tmp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first := tmp.Addr().String()
	tmp.Close()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	fds := testutil.NewFds()
	bad := mustParse(t, "api=tcp://"+busy.Addr().String())
	socks, err := Open(fds, []listener.Spec{mustParse(t, "web=tcp://"+first), bad})
	if err == nil {
		Close(socks)
		t.Fatalf("Open succeeded with a busy second spec")
	}
	if socks != nil {
		t.Errorf("Open returned sockets with its error: %v", socks)
	}
	if !strings.Contains(err.Error(), bad.String()) {
		t.Errorf("error %q does not name the failing spec %s", err, bad)
	}
	lns := fds.AddedListeners()
	if len(lns) != 1 {
		t.Fatalf("added %d listeners, want the first one only", len(lns))
	}
	lns[0].(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond)) // still open: time out, not hang
	if _, err := lns[0].Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("first listener after the failed Open: Accept error %v, want net.ErrClosed", err)
	}
	again, err := net.Listen("tcp", first)
	if err != nil {
		t.Fatalf("the first spec's port %s is still bound after the failed Open: %v", first, err)
	}
	again.Close()
}

func TestOpenRejectsDuplicateNames(t *testing.T) {
	fds := testutil.NewFds()
	_, err := Open(fds, []listener.Spec{
		mustParse(t, "web=tcp://127.0.0.1:0"),
		mustParse(t, "web=udp://127.0.0.1:0"),
	})
	if !errors.Is(err, listener.ErrSpec) {
		t.Fatalf("Open with a duplicate name: %v, want listener.ErrSpec", err)
	}
	if added := fds.Added(); len(added) != 0 {
		t.Errorf("Open bound sockets before rejecting the set: %q", added)
	}
}

// TestFileFdKeepsListenerNonblocking is a known trap: os/exec calls
// Fd on every ExtraFiles entry. Socket.File's Fd must leave the shared open
// file description non-blocking.
func TestFileFdKeepsListenerNonblocking(t *testing.T) {
	socks := mustOpen(t, testutil.NewFds(),
		mustParse(t, "web=tcp://127.0.0.1:0"),
		mustParse(t, "dns=udp://127.0.0.1:0"),
		mustParse(t, "admin=unix://"+filepath.Join(t.TempDir(), "a.sock")))
	for _, s := range socks {
		raw := rawConnOf(t, s)
		if getfl(t, raw)&unix.O_NONBLOCK == 0 {
			t.Fatalf("%s: net socket is blocking before Fd was called", s.Spec)
		}
		fd := s.File().Fd()
		if fl := getfl(t, raw); fl&unix.O_NONBLOCK == 0 {
			t.Errorf("%s: File().Fd() cleared O_NONBLOCK on the shared description (flags %#x)", s.Spec, fl)
		}
		if fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
			t.Errorf("%s: descriptor returned by Fd has flags %#x, %v; want O_NONBLOCK", s.Spec, fl, err)
		}
	}
}

// TestNetFileFdClearsNonblock is the control: it shows the trap is real,
// so that the test above proves something.
func TestNetFileFdClearsNonblock(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw := ln.(syscall.Conn)
	own := netFd(t, raw)
	t.Cleanup(func() { unix.SetNonblock(own, true) }) // before ln.Close (LIFO)

	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if getfl(t, raw)&unix.O_NONBLOCK == 0 {
		t.Fatalf("listener blocking before Fd")
	}
	if getfl(t, f)&unix.O_NONBLOCK == 0 {
		t.Fatalf("File blocking before Fd")
	}
	f.Fd()
	if fl := getfl(t, raw); fl&unix.O_NONBLOCK != 0 {
		t.Fatalf("(*net.TCPListener).File().Fd() left O_NONBLOCK set (flags %#x): the trap no longer reproduces", fl)
	}
	if err := unix.SetNonblock(own, true); err != nil {
		t.Fatal(err)
	}
	if getfl(t, raw)&unix.O_NONBLOCK == 0 {
		t.Fatalf("SetNonblock did not restore O_NONBLOCK")
	}
}
