//go:build linux

package master

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Bounds of the master's own HTTP servers (metrics and control), so that
// no client — a slow one, an idle one, or many — can take the descriptors
// the master needs to start workers.
const (
	// maxEndpointConns is how many connections each server holds at once;
	// more wait in the listen backlog (no descriptor) until one closes.
	maxEndpointConns = 64
	endpointIdle     = 10 * time.Second // an idle keep-alive connection is closed
	endpointRead     = 10 * time.Second // to read a whole request
	metricsWrite     = 30 * time.Second // to write a scrape's answer
	endpointHeaders  = 16 << 10
)

// boundedServer is an http.Server with the master's bounds; write bounds
// the time to answer (0: none, for the control API, whose reload answers
// when the upgrade is over).
func boundedServer(h http.Handler, write time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       endpointRead,
		WriteTimeout:      write,
		IdleTimeout:       endpointIdle,
		MaxHeaderBytes:    endpointHeaders,
	}
}

// limitListener accepts at most n connections at a time: Accept waits
// for one to close first. (Like golang.org/x/net/netutil.LimitListener.)
type limitListener struct {
	net.Listener
	sem  chan struct{}
	done chan struct{}
	once sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})} // sem: one token per open connection
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
