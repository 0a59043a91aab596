package server

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// GRPCServer is the part of *grpc.Server that GRPC needs (the package does
// not import grpc).
type GRPCServer interface {
	Serve(ln net.Listener) error
	GracefulStop()
	Stop()
}

// GRPC adapts a *grpc.Server to Server: Shutdown stops accepting, lets
// every connection already accepted reach the server, then calls
// GracefulStop (no new RPCs, those in flight finish), and Stop when ctx
// ends first.
//
//	s := grpc.NewServer()
//	pb.RegisterGreeterServer(s, &greeter{})
//	return server.Serve(w, "grpc", server.GRPC(s))
//
// Why the first step: the workers share one accept queue, and a
// *grpc.Server closes, unread, a connection that its accept loop took just
// before GracefulStop but had not yet handed to its handshake; the client
// then reads a reset ("error reading server preface") and its channel
// fails every call until it reconnects. A connection that reached the
// handshake is instead told to go away (GOAWAY), which clients handle.
func GRPC(s GRPCServer) Server { return &grpcServer{s: s} }

type grpcServer struct {
	s    GRPCServer
	mu   sync.Mutex
	gate *acceptGate // set by Serve
}

func (g *grpcServer) Serve(ln net.Listener) error {
	gate := newAcceptGate(ln)
	g.mu.Lock()
	g.gate = gate
	g.mu.Unlock()
	defer gate.served()
	return g.s.Serve(gate)
}

func (g *grpcServer) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		gate.stop(ctx)
		defer gate.Close()
	}
	done := make(chan struct{})
	go func() { g.s.GracefulStop(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		g.s.Stop()
		<-done
		return ctx.Err()
	}
}

// acceptGate is a listener that can stop accepting without telling its
// server, and that knows when every connection it handed out has been
// used by the server (read, written, given a deadline or closed): until
// then, the server may still be about to look at it.
type acceptGate struct {
	net.Listener
	closing                      chan struct{} // closed by stop: the listener is being closed
	ended                        chan struct{} // closed when Accept has seen the close, or Serve returned
	released                     chan struct{} // closed by Close: Accept may return its error
	stopOnce, endOnce, closeOnce sync.Once

	mu      sync.Mutex
	pending int           // connections handed out, not yet used
	idle    chan struct{} // closed when pending reaches 0 after stop
}

func newAcceptGate(ln net.Listener) *acceptGate {
	return &acceptGate{Listener: ln, closing: make(chan struct{}), ended: make(chan struct{}), released: make(chan struct{})}
}

// Accept returns the next connection. Once stop has closed the listener, it
// holds the error until Close: the server's accept loop must not end before
// its GracefulStop, or it reports the stop as a failure.
func (g *acceptGate) Accept() (net.Conn, error) {
	c, err := g.Listener.Accept()
	if err != nil {
		select {
		case <-g.closing:
			g.served()
			<-g.released
		default:
		}
		return nil, err
	}
	g.mu.Lock()
	g.pending++
	g.mu.Unlock()
	return &gatedConn{Conn: c, gate: g}, nil
}

// stop closes the listener and waits, until ctx ends, for the accept loop
// to see it and for every connection accepted before to be used.
func (g *acceptGate) stop(ctx context.Context) {
	g.stopOnce.Do(func() {
		close(g.closing)
		g.Listener.Close()
	})
	select {
	case <-g.ended:
	case <-ctx.Done():
		return
	}
	g.mu.Lock()
	idle := g.idle
	if g.pending > 0 && idle == nil {
		idle = make(chan struct{})
		g.idle = idle
	}
	g.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
		}
	}
}

// served records that no more connections will come from Accept.
func (g *acceptGate) served() { g.endOnce.Do(func() { close(g.ended) }) }

func (g *acceptGate) used() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending--
	if g.pending == 0 && g.idle != nil {
		select {
		case <-g.idle:
		default:
			close(g.idle)
		}
	}
}

// Close closes the listener and lets a held Accept return. Safe to call
// more than once.
func (g *acceptGate) Close() error {
	var err error
	g.stopOnce.Do(func() {
		close(g.closing)
		err = g.Listener.Close()
	})
	g.closeOnce.Do(func() { close(g.released) })
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// gatedConn tells its gate when the server first uses it.
type gatedConn struct {
	net.Conn
	gate *acceptGate
	seen atomic.Bool
}

func (c *gatedConn) use() {
	if !c.seen.Load() && c.seen.CompareAndSwap(false, true) {
		c.gate.used()
	}
}

func (c *gatedConn) Read(p []byte) (int, error)  { c.use(); return c.Conn.Read(p) }
func (c *gatedConn) Write(p []byte) (int, error) { c.use(); return c.Conn.Write(p) }
func (c *gatedConn) Close() error                { c.use(); return c.Conn.Close() }

func (c *gatedConn) SetDeadline(t time.Time) error {
	c.use()
	return c.Conn.SetDeadline(t)
}

func (c *gatedConn) SetReadDeadline(t time.Time) error {
	c.use()
	return c.Conn.SetReadDeadline(t)
}

func (c *gatedConn) SetWriteDeadline(t time.Time) error {
	c.use()
	return c.Conn.SetWriteDeadline(t)
}

// SyscallConn passes the socket through (grpc reads socket options from it).
func (c *gatedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}
