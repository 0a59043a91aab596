//go:build unix

package sockets

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/preforkd/preforkd/listener"

	"github.com/cloudflare/tableflip"
	"golang.org/x/sys/unix"
)

// Fds is the part of *tableflip.Fds that Open needs. An upgraded master
// finds its sockets among the inherited ones; a socket opened anew is added so
// that the next upgrade hands it on.
type Fds interface {
	// Listener and PacketConn return an inherited socket, or (nil, nil).
	Listener(network, addr string) (net.Listener, error)
	PacketConn(network, addr string) (net.PacketConn, error)
	AddListener(network, addr string, ln tableflip.Listener) error
	AddPacketConn(network, addr string, pc tableflip.PacketConn) error
}

// Socket is one listening socket held by the master.
type Socket struct {
	Spec listener.Spec
	// Inherited is true when the socket came from the previous master.
	Inherited bool
	ln        net.Listener   // stream sockets
	pc        net.PacketConn // udp
	file      *os.File
}

// Open opens every spec exactly once, in order: it takes the inherited
// socket when there is one, else binds and adds the new socket to fds. On
// error it closes its own descriptors of what it opened and returns an error
// naming the spec; the copies added to a *tableflip.Fds are released by the
// upgrader's Stop (master.Run calls it when its start fails).
func Open(fds Fds, specs []listener.Spec) ([]*Socket, error) {
	return OpenActivated(fds, specs, nil)
}

// OpenActivated is Open for a master that systemd started with sockets
// (socket activation; act comes from FromEnv): each spec takes the
// activated socket with its name (LISTEN_FDNAMES), else the one bound to its
// address, instead of binding. The taken sockets are added to fds, so that
// upgrades hand them on. An activated socket that no spec takes is an error
// (wrapping ErrUnmatched).
func OpenActivated(fds Fds, specs []listener.Spec, act *Inherited) ([]*Socket, error) {
	if err := listener.ValidateSet(specs); err != nil {
		return nil, err
	}
	socks := make([]*Socket, 0, len(specs))
	for _, sp := range specs {
		s, err := open(fds, sp, act)
		if err != nil {
			Close(socks)
			return nil, fmt.Errorf("listen %s: %w", sp, err)
		}
		socks = append(socks, s)
	}
	if err := act.unused(); err != nil {
		Close(socks)
		return nil, err
	}
	return socks, nil
}

func open(fds Fds, sp listener.Spec, act *Inherited) (*Socket, error) {
	s := &Socket{Spec: sp}
	var raw syscall.Conn
	actLn, actPc := act.match(sp)
	if sp.Packet() {
		pc, err := fds.PacketConn(sp.Network, sp.Address)
		if err != nil {
			return nil, err
		}
		if pc == nil && actPc != nil {
			pc = actPc
			if err := fds.AddPacketConn(sp.Network, sp.Address, pc.(tableflip.PacketConn)); err != nil {
				return nil, err
			}
		} else if pc != nil {
			s.Inherited = true
		} else {
			if pc, err = net.ListenPacket(sp.Network, sp.Address); err != nil {
				return nil, unwrapOp(err)
			}
			if err := fds.AddPacketConn(sp.Network, sp.Address, pc.(tableflip.PacketConn)); err != nil {
				pc.Close()
				return nil, err
			}
		}
		s.pc, raw = pc, pc.(syscall.Conn)
	} else {
		ln, err := fds.Listener(sp.Network, sp.Address)
		if err != nil {
			return nil, err
		}
		if ln == nil && actLn != nil {
			ln = actLn
			if err := fds.AddListener(sp.Network, sp.Address, ln.(tableflip.Listener)); err != nil {
				return nil, err
			}
		} else if ln != nil {
			s.Inherited = true
		} else {
			if sp.Network == "unix" {
				if err := RemoveStale(sp.Address); err != nil {
					return nil, err
				}
			}
			if ln, err = net.Listen(sp.Network, sp.Address); err != nil {
				return nil, unwrapOp(err)
			}
			if err := fds.AddListener(sp.Network, sp.Address, ln.(tableflip.Listener)); err != nil {
				ln.Close()
				return nil, err
			}
		}
		if ul, ok := ln.(*net.UnixListener); ok {
			// The next master uses this socket: never unlink it on close.
			// The final stop removes it (tableflip's Upgrader.Stop).
			ul.SetUnlinkOnClose(false)
		}
		s.ln, raw = ln, ln.(syscall.Conn)
	}
	var err error
	if s.file, err = dupFile(raw, sp.Name); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// unwrapOp turns "listen tcp 127.0.0.1:80: bind: address already in use"
// into "bind: address already in use": the caller names the spec already.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var sc *os.SyscallError
		if errors.As(op.Err, &sc) {
			return fmt.Errorf("%s: %w", sc.Syscall, sc.Err)
		}
		return op.Err
	}
	return err
}

// dupFile duplicates the socket (close-on-exec) and wraps the copy with
// os.NewFile. Unlike (*net.TCPListener).File, the result's Fd method does
// not switch the shared open file description to blocking mode.
func dupFile(raw syscall.Conn, name string) (*os.File, error) {
	rc, err := raw.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup: %w", derr)
	}
	return os.NewFile(uintptr(nfd), name), nil
}

// File returns the descriptor to pass to a worker in exec.Cmd.ExtraFiles.
// It stays valid until Close; calling Fd on it does not change the socket's
// blocking mode.
func (s *Socket) File() *os.File { return s.file }

// Listener returns the master's own stream listener (nil for udp). The
// master never accepts on it; it keeps the socket open. After Unpoll
// (Linux) nothing may wait on it: no readiness would ever wake the wait.
func (s *Socket) Listener() net.Listener { return s.ln }

// Close closes the master's descriptors of the socket. It does not remove
// a unix socket file: tableflip's Upgrader.Stop does that at the final stop.
// It is safe to call twice.
func (s *Socket) Close() error {
	var first error
	for _, c := range []interface{ Close() error }{s.file, s.ln, s.pc} {
		if c == nil || c == (*os.File)(nil) {
			continue
		}
		if err := c.Close(); err != nil && first == nil && !errors.Is(err, os.ErrClosed) && !errors.Is(err, net.ErrClosed) {
			first = err
		}
	}
	return first
}

// Close closes every socket.
func Close(socks []*Socket) {
	for _, s := range socks {
		s.Close()
	}
}

// Files returns the sockets' hand-off files in order (fds 3, 4, … in the
// worker when placed first in ExtraFiles).
func Files(socks []*Socket) []*os.File {
	files := make([]*os.File, len(socks))
	for i, s := range socks {
		files[i] = s.file
	}
	return files
}

// RemoveStale removes a unix socket file that nobody listens on any more
// (a master that was killed leaves it behind). A path that is not a socket,
// or a socket that answers, is left alone and reported as an error by the
// bind that follows (for a live one: ErrInUse).
func RemoveStale(path string) error {
	if path == "" || strings.HasPrefix(path, "@") {
		return nil
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s", ErrInUse, path)
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// ErrInUse means a unix socket path is held by a live process.
var ErrInUse = errors.New("a live process is listening on")
