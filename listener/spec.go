package listener

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Spec is one parsed -listen entry.
type Spec struct {
	// Name identifies the socket to workers (LISTEN_FDNAMES). Letters,
	// digits, '_', '-' and '.', at most 255 bytes.
	Name string
	// Network is "tcp", "tcp4", "tcp6", "unix" or "udp".
	Network string
	// Address is host:port for tcp and udp, a path (or "@name" for the
	// abstract namespace) for unix.
	Address string
}

// ErrSpec is wrapped by every error Parse returns.
var ErrSpec = errors.New("invalid listen spec")

// Parse parses NAME=SCHEME://ADDR, for example "http=tcp://127.0.0.1:8080",
// "admin=unix:///run/app.sock" or "dns=udp://127.0.0.1:5353". Every error
// quotes the whole value and wraps ErrSpec.
func Parse(s string) (Spec, error) {
	fail := func(format string, args ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("%w %q: %s", ErrSpec, s, fmt.Sprintf(format, args...))
	}
	name, rest, ok := strings.Cut(s, "=")
	if !ok {
		return fail("want NAME=SCHEME://ADDR")
	}
	if err := validName(name); err != nil {
		return fail("%v", err)
	}
	scheme, addr, ok := strings.Cut(rest, "://")
	if !ok {
		return fail("want SCHEME://ADDR after the name")
	}
	sp := Spec{Name: name, Network: scheme, Address: addr}
	switch scheme {
	case "tcp", "tcp4", "tcp6", "udp":
		if err := validHostPort(addr); err != nil {
			return fail("%v", err)
		}
	case "unix":
		if addr == "" || addr == "@" {
			return fail("empty unix socket path")
		}
		if len(addr) > 107 {
			return fail("unix socket path longer than 107 bytes")
		}
		if strings.IndexByte(addr, 0) >= 0 {
			return fail("NUL byte in unix socket path")
		}
	default:
		return fail("unknown scheme %q (want tcp, tcp4, tcp6, unix or udp)", scheme)
	}
	return sp, nil
}

// String formats the spec as Parse accepts it.
func (s Spec) String() string { return s.Name + "=" + s.Network + "://" + s.Address }

// Packet reports whether the socket is datagram-oriented (udp).
func (s Spec) Packet() bool { return s.Network == "udp" }

func validName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > 255 {
		return errors.New("name longer than 255 bytes")
	}
	for _, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return fmt.Errorf("name %q has %q (allowed: letters, digits, '_', '-', '.')", name, c)
		}
	}
	return nil
}

func validHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want HOST:PORT: %v", strings.TrimPrefix(err.Error(), "address "+addr+": "))
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if strings.ContainsAny(host, " /\\@") || strings.IndexFunc(host, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return fmt.Errorf("bad host %q", host)
	}
	return nil
}

// ValidateSet checks that names are unique across specs.
func ValidateSet(specs []Spec) error {
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		if seen[s.Name] {
			return fmt.Errorf("%w %q: name %q used twice", ErrSpec, s.String(), s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}
