package testutil

import (
	"net"
	"sync"

	"github.com/cloudflare/tableflip"
)

// Fds stands in for *tableflip.Fds (sockets.Fds): it hands out the sockets
// a test preset as inherited, and records every socket added. The zero
// value has nothing inherited; use NewFds to preset some.
type Fds struct {
	mu        sync.Mutex
	inherited map[string]any // by FdsKey
	added     []string       // FdsKey of each addition, in call order
	lns       []net.Listener
	pcs       []net.PacketConn
}

// NewFds returns an Fds with nothing inherited.
func NewFds() *Fds { return &Fds{inherited: map[string]any{}} }

// FdsKey names a socket: "listener tcp 127.0.0.1:0", "packet udp …".
func FdsKey(kind, network, addr string) string { return kind + " " + network + " " + addr }

// PresetListener makes ln inherited under network and addr.
func (f *Fds) PresetListener(network, addr string, ln net.Listener) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inherited[FdsKey("listener", network, addr)] = ln
}

// PresetPacketConn makes pc inherited under network and addr.
func (f *Fds) PresetPacketConn(network, addr string, pc net.PacketConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inherited[FdsKey("packet", network, addr)] = pc
}

func (f *Fds) Listener(network, addr string) (net.Listener, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ln, _ := f.inherited[FdsKey("listener", network, addr)].(net.Listener)
	return ln, nil
}

func (f *Fds) PacketConn(network, addr string) (net.PacketConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pc, _ := f.inherited[FdsKey("packet", network, addr)].(net.PacketConn)
	return pc, nil
}

func (f *Fds) AddListener(network, addr string, ln tableflip.Listener) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added = append(f.added, FdsKey("listener", network, addr))
	f.lns = append(f.lns, ln)
	return nil
}

func (f *Fds) AddPacketConn(network, addr string, pc tableflip.PacketConn) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added = append(f.added, FdsKey("packet", network, addr))
	f.pcs = append(f.pcs, pc)
	return nil
}

// Added lists the FdsKey of every addition, in call order.
func (f *Fds) Added() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.added...)
}

// AddedListeners and AddedPacketConns are the added sockets, in order.
func (f *Fds) AddedListeners() []net.Listener {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]net.Listener(nil), f.lns...)
}

func (f *Fds) AddedPacketConns() []net.PacketConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]net.PacketConn(nil), f.pcs...)
}
