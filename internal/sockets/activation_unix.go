//go:build unix

package sockets

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/preforkd/preforkd/listener"
)

// ErrUnmatched is wrapped when a socket handed over by systemd matches no
// -listen entry.
var ErrUnmatched = errors.New("activated socket matches no -listen entry")

// match returns the activated socket for sp: the one whose LISTEN_FDNAMES
// name is sp.Name, else the first unused one bound to the same address.
func (in *Inherited) match(sp listener.Spec) (net.Listener, net.PacketConn) {
	if in == nil {
		return nil, nil
	}
	for i := range in.all {
		e := &in.all[i]
		if !e.used && e.name == sp.Name && (e.pc != nil) == sp.Packet() {
			e.used = true
			return e.ln, e.pc
		}
	}
	for i := range in.all {
		e := &in.all[i]
		if e.used {
			continue
		}
		var a net.Addr
		if e.ln != nil {
			a = e.ln.Addr()
		} else {
			a = e.pc.LocalAddr()
		}
		if sameAddr(sp, a) {
			e.used = true
			return e.ln, e.pc
		}
	}
	return nil, nil
}

// unused reports an activated socket that no spec took.
func (in *Inherited) unused() error {
	if in == nil {
		return nil
	}
	for _, e := range in.all {
		if e.used {
			continue
		}
		addr := ""
		if e.ln != nil {
			addr = e.ln.Addr().Network() + "://" + e.ln.Addr().String()
		} else {
			addr = e.pc.LocalAddr().Network() + "://" + e.pc.LocalAddr().String()
		}
		return fmt.Errorf("%w: %s (name %q)", ErrUnmatched, addr, e.name)
	}
	return nil
}

func sameAddr(sp listener.Spec, a net.Addr) bool {
	switch sp.Network {
	case "unix":
		return a.Network() == "unix" && strings.TrimPrefix(a.String(), "@") == strings.TrimPrefix(sp.Address, "@")
	case "udp":
		ua, ok := a.(*net.UDPAddr)
		want, err := net.ResolveUDPAddr("udp", sp.Address)
		return ok && err == nil && ua.Port == want.Port && ipMatch(want.IP, ua.IP)
	default:
		ta, ok := a.(*net.TCPAddr)
		want, err := net.ResolveTCPAddr(sp.Network, sp.Address)
		return ok && err == nil && ta.Port == want.Port && ipMatch(want.IP, ta.IP)
	}
}

// ipMatch treats an unspecified address (":8080") as matching any.
func ipMatch(want, got net.IP) bool {
	if len(want) == 0 || want.IsUnspecified() {
		return len(got) == 0 || got.IsUnspecified()
	}
	return want.Equal(got)
}
