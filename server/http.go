package server

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/preforkd/preforkd/metrics"
	"github.com/preforkd/preforkd/worker"
)

// HTTP serves an http.Handler with a drain that loses no request. The zero
// value is not usable: set Handler.
type HTTP struct {
	// Handler answers requests.
	Handler http.Handler
	// Server, when set, gives its timeouts and settings; they are copied,
	// and the caller's Server is not modified.
	Server *http.Server
	// IdleClose is how long a connection must have been idle during a
	// drain before it is closed. Defaults to 1s.
	IdleClose time.Duration
	// RequestTimeout, when positive, is the deadline of every request
	// (Run defaults it to the worker's, the master's -request-timeout): a
	// request still running after it is answered 503 if its handler has
	// written nothing yet (later writes fail with http.ErrHandlerTimeout),
	// its goroutine's stack is logged once with the method, path and
	// elapsed time, and it is counted in http_request_timeouts_total. With
	// more than StuckRecycle requests past it (default 3), or one past 10
	// times it, the worker asks to be replaced (its replacement is ready
	// first; this one drains). No goroutine or timer per request: one
	// watchdog checks every quarter of the timeout.
	RequestTimeout time.Duration
	StuckRecycle   int

	once     sync.Once
	srv      *http.Server
	draining atomic.Bool
	mu       sync.Mutex
	conns    map[*trackedConn]struct{} // open connections (written per connection, not per request)
	served   chan struct{}
	ln       net.Listener
	drainAt  time.Time // when Shutdown began (guarded by mu)
}

// trackedConn is a connection with the state the drain needs, kept in
// atomics so that a request costs two stores and no lock: since is set
// only while draining (idle time before the drain does not count, so it
// is not needed before).
type trackedConn struct {
	net.Conn
	since atomic.Int64 // unix ns of the last state change during the drain; stored before state
	state atomic.Int32 // http.ConnState
}

// ReadFrom keeps the connection's own (sendfile, splice) where it has one.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// CloseWrite lets net/http half-close the connection, as it does a TCP one.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

type writerOnly struct{ io.Writer }

// trackingListener hands out trackedConns.
type trackingListener struct{ net.Listener }

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: c}, nil
}

func (h *HTTP) init() {
	h.once.Do(func() {
		h.srv = &http.Server{ReadHeaderTimeout: 30 * time.Second}
		if h.Server != nil {
			h.srv = cloneServer(h.Server)
		}
		if h.IdleClose <= 0 {
			h.IdleClose = time.Second
		}
		h.conns = map[*trackedConn]struct{}{}
		h.served = make(chan struct{})
		h.srv.Handler = http.HandlerFunc(h.serveHTTP)
		h.srv.ConnState = h.connState
	})
}

func (h *HTTP) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if h.draining.Load() {
		// The client learns before its next request that this connection
		// ends; net/http closes it after this response.
		w.Header().Set("Connection", "close")
	}
	h.Handler.ServeHTTP(w, r)
}

func (h *HTTP) connState(c net.Conn, st http.ConnState) {
	tc, ok := c.(*trackedConn)
	if !ok {
		return // not from our listener: cannot happen
	}
	switch st {
	case http.StateNew:
		h.mu.Lock()
		h.conns[tc] = struct{}{}
		h.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		h.mu.Lock()
		delete(h.conns, tc)
		h.mu.Unlock()
	}
	if h.draining.Load() {
		tc.since.Store(time.Now().UnixNano())
	}
	tc.state.Store(int32(st))
}

// Serve accepts on ln until Shutdown. It returns nil after Shutdown (at
// once, closing ln, when Shutdown came first), and the accept error
// otherwise. Call it once.
func (h *HTTP) Serve(ln net.Listener) error {
	h.init()
	h.mu.Lock()
	if h.draining.Load() {
		h.mu.Unlock()
		ln.Close()
		return nil
	}
	h.ln = ln
	h.mu.Unlock()
	defer close(h.served)
	err := h.srv.Serve(trackingListener{ln})
	if h.draining.Load() {
		return nil
	}
	return err
}

// Shutdown drains: it stops accepting, lets requests in flight finish,
// answers the next request on each keep-alive connection with
// "Connection: close", closes connections idle for IdleClose, and returns
// when every connection is closed. When ctx ends first, it closes every
// connection and returns ctx's error.
//
// A second Shutdown returns nil at once.
func (h *HTTP) Shutdown(ctx context.Context) error {
	h.init()
	h.mu.Lock()
	if h.draining.Swap(true) {
		h.mu.Unlock()
		return nil
	}
	h.drainAt = time.Now()
	ln := h.ln
	h.mu.Unlock()
	if ln != nil {
		ln.Close()
		select {
		case <-h.served:
		case <-ctx.Done():
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if h.closeIdle() == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			h.srv.Close()
			return ctx.Err()
		}
	}
}

// closeIdle closes connections that have been idle (or new without a
// request) for IdleClose during the drain, and returns how many
// connections remain. Idle time before the drain does not count: a client
// may be about to send on a connection it has kept for minutes.
func (h *HTTP) closeIdle() int {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.conns {
		st := http.ConnState(c.state.Load()) // before since: see trackedConn
		since := time.Unix(0, c.since.Load())
		if since.Before(h.drainAt) {
			since = h.drainAt
		}
		if (st == http.StateIdle || st == http.StateNew) && now.Sub(since) >= h.IdleClose {
			c.Close()
		}
	}
	return len(h.conns)
}

// ServeHTTP serves handler on the worker's listener named name (every
// stream listener the worker inherited, when name is ""), tells the master
// the worker is ready, and when the worker's context ends drains within
// the worker's grace period. It returns nil after a clean drain.
func ServeHTTP(w *worker.Worker, name string, handler http.Handler) error {
	return (&HTTP{Handler: handler}).Run(w, name)
}

// Run is ServeHTTP with h's settings (one HTTP per listener when name is
// ""). When the worker has a MaxRequests, it asks to be recycled once it
// has served that many requests.
func (h *HTTP) Run(w *worker.Worker, name string) error {
	names := []string{name}
	if name == "" {
		names = nil
		for _, n := range w.Names() {
			if _, err := w.Listener(n); err == nil {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return errors.New("server: the worker inherited no stream listener")
		}
	}
	handler := h.Handler
	if timeout := cmp.Or(h.RequestTimeout, w.RequestTimeout()); timeout > 0 {
		d := newDeadlines(timeout, cmp.Or(h.StuckRecycle, 3), w.Registry(), func(reason string) { w.Recycle(reason) }, slog.Default())
		handler = d.wrap(handler) // inside the metrics: a 503 is counted as any answer
		stop := make(chan struct{})
		defer close(stop)
		go d.run(stop)
	}
	if reg := w.Registry(); reg != nil {
		handler = metrics.NewHTTPMetrics(reg).Wrap(handler)
	}
	if limit := int64(w.MaxRequests()); limit > 0 {
		var n atomic.Int64
		next := handler
		handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if n.Add(1) == limit {
				w.Recycle("max-requests")
			}
			next.ServeHTTP(rw, r)
		})
	}
	servers := make([]*HTTP, len(names))
	errc := make(chan error, len(names)) // one per Serve: none blocks on exit
	for i, n := range names {
		ln, err := w.Listener(n)
		if err != nil {
			return err
		}
		// The caller's h is left as it is: each listener gets its own.
		srv := &HTTP{Handler: handler, Server: h.Server, IdleClose: h.IdleClose}
		servers[i] = srv
		go func() { errc <- srv.Serve(ln) }()
	}
	var first error
	if err := w.Ready(); err != nil {
		first = err
	} else {
		select {
		case first = <-errc: // a listener failed: stop the others too
		case <-w.Done():
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.Grace())
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// cloneServer copies a server's settings (not its Handler or ConnState,
// which HTTP sets).
func cloneServer(s *http.Server) *http.Server {
	return &http.Server{ReadTimeout: s.ReadTimeout, ReadHeaderTimeout: s.ReadHeaderTimeout, WriteTimeout: s.WriteTimeout,
		IdleTimeout: s.IdleTimeout, MaxHeaderBytes: s.MaxHeaderBytes, ErrorLog: s.ErrorLog, TLSConfig: s.TLSConfig,
		TLSNextProto: s.TLSNextProto, BaseContext: s.BaseContext, ConnContext: s.ConnContext,
		DisableGeneralOptionsHandler: s.DisableGeneralOptionsHandler, Protocols: s.Protocols, HTTP2: s.HTTP2}
}
