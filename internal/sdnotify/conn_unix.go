//go:build unix

package sdnotify

import (
	"fmt"
	"net"
	"strings"
	"sync"
)

// Conn is a connected notification socket. It is safe for concurrent use.
type Conn struct {
	mu sync.Mutex
	c  *net.UnixConn
}

// Dial connects to the socket named by addr, as found in NOTIFY_SOCKET: a
// path, or an abstract name starting with '@'. An empty addr means
// notifications are not wanted: Dial returns (nil, nil), and a nil *Conn
// accepts every call and sends nothing.
func Dial(addr string) (*Conn, error) {
	if addr == "" {
		return nil, nil
	}
	name := addr
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("sdnotify: dial %q: %w", addr, err)
	}
	return &Conn{c: c}, nil
}

// Send sends one message made of the given lines (each KEY=VALUE). On a nil
// Conn it does nothing and returns nil.
func (c *Conn) Send(lines ...string) error {
	if c == nil {
		return nil
	}
	msg := strings.Join(lines, "\n")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return net.ErrClosed
	}
	if _, err := c.c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sdnotify: send %q: %w", msg, err)
	}
	return nil
}

// Close closes the socket. It is idempotent and safe on a nil Conn.
func (c *Conn) Close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil
	}
	err := c.c.Close()
	c.c = nil
	return err
}
