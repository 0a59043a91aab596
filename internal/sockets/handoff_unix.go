//go:build unix

package sockets

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/preforkd/preforkd/internal/contract"
	"golang.org/x/sys/unix"
)

// Environment variables of the systemd socket-activation protocol
// (sd_listen_fds(3)).
const (
	envFds     = contract.ListenFds
	envFdNames = contract.ListenFdNames
	envPid     = contract.ListenPid
)

// FirstFd is the first inherited descriptor (SD_LISTEN_FDS_START).
const FirstFd = 3

// Env returns LISTEN_FDS and LISTEN_FDNAMES for the sockets, which must be
// the first entries of the worker's ExtraFiles. LISTEN_PID is not set here:
// os/exec cannot know the child's pid, so the exec shim sets it for
// external workers, and the framework's own workers skip the check.
func Env(socks []*Socket) []string {
	names := make([]string, len(socks))
	for i, s := range socks {
		names[i] = s.Spec.Name
	}
	return []string{
		envFds + "=" + strconv.Itoa(len(socks)),
		envFdNames + "=" + strings.Join(names, ":"),
	}
}

// Inherited holds the sockets a process received, in fd order.
type Inherited struct {
	names []string
	lns   map[string]net.Listener
	pcs   map[string]net.PacketConn
	all   []entry
}

type entry struct {
	name string
	ln   net.Listener
	pc   net.PacketConn
	used bool
}

// ErrNoSocket is wrapped when a name was not handed over.
var ErrNoSocket = errors.New("no inherited socket")

// FromEnv takes the sockets described by LISTEN_FDS/LISTEN_FDNAMES and
// unsets the three variables, so that the worker's own children don't
// inherit them. When LISTEN_PID is set and is not this process, the sockets
// are not ours and FromEnv returns an empty set. Each socket is duplicated
// with close-on-exec set and its original descriptor closed, so nothing
// leaks into the worker's children; Fd is never called on a socket created
// by net. With no LISTEN_FDS, the set is empty and the error nil.
func FromEnv() (*Inherited, error) {
	in := &Inherited{lns: map[string]net.Listener{}, pcs: map[string]net.PacketConn{}}
	nstr, pidstr, namestr := os.Getenv(envFds), os.Getenv(envPid), os.Getenv(envFdNames)
	os.Unsetenv(envFds)
	os.Unsetenv(envPid)
	os.Unsetenv(envFdNames)
	if nstr == "" {
		return in, nil
	}
	if pidstr != "" {
		if pid, err := strconv.Atoi(pidstr); err != nil || pid != os.Getpid() {
			return in, nil
		}
	}
	n, err := strconv.Atoi(nstr)
	if err != nil || n < 0 || n > 1024 {
		return nil, fmt.Errorf("%s=%q: not a count of descriptors", envFds, nstr)
	}
	var names []string
	if namestr != "" {
		names = strings.Split(namestr, ":")
	}
	for i := 0; i < n; i++ {
		name := "unknown"
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		if err := in.take(FirstFd+i, name); err != nil {
			in.Close()
			// Leave none of the handed-over descriptors open (they have
			// close-on-exec cleared and would leak into children).
			for j := i; j < n; j++ {
				unix.Close(FirstFd + j)
			}
			return nil, err
		}
	}
	return in, nil
}

func (in *Inherited) take(fd int, name string) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("inherited fd %d (%s): not a socket: %w", fd, name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close() // net keeps its own close-on-exec duplicate
	switch typ {
	case unix.SOCK_DGRAM:
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return fmt.Errorf("inherited fd %d (%s): %w", fd, name, err)
		}
		if _, dup := in.pcs[name]; !dup {
			in.pcs[name] = pc
		}
		in.all = append(in.all, entry{name: name, pc: pc})
	default:
		ln, err := net.FileListener(f)
		if err != nil {
			return fmt.Errorf("inherited fd %d (%s): %w", fd, name, err)
		}
		if _, dup := in.lns[name]; !dup {
			in.lns[name] = ln
		}
		in.all = append(in.all, entry{name: name, ln: ln})
	}
	in.names = append(in.names, name)
	return nil
}

// Names lists the inherited sockets' names in fd order.
func (in *Inherited) Names() []string { return append([]string(nil), in.names...) }

// Listener returns the stream listener handed over under name. The
// Inherited keeps ownership: its Close closes it (only this process's
// copy; the socket stays open in the master and the other workers).
func (in *Inherited) Listener(name string) (net.Listener, error) {
	if ln, ok := in.lns[name]; ok {
		return ln, nil
	}
	return nil, fmt.Errorf("%w named %q (have %q)", ErrNoSocket, name, in.names)
}

// PacketConn returns the datagram socket handed over under name.
func (in *Inherited) PacketConn(name string) (net.PacketConn, error) {
	if pc, ok := in.pcs[name]; ok {
		return pc, nil
	}
	return nil, fmt.Errorf("%w named %q (have %q)", ErrNoSocket, name, in.names)
}

// Close closes every inherited socket. Safe to call twice.
func (in *Inherited) Close() error {
	for _, e := range in.all {
		if e.ln != nil {
			e.ln.Close()
		}
		if e.pc != nil {
			e.pc.Close()
		}
	}
	return nil
}
