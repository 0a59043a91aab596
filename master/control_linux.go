//go:build linux

package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// controller is what the control API drives (the master). Each method is
// safe from any goroutine; a false return means the master is stopping.
type controller interface {
	status(withHTTP bool) Status                        // withHTTP: scrape the workers for SlotStatus.HTTP
	reload(canary time.Duration, reply chan error) bool // canary < 0: as configured
	restart(reply chan error) bool
	scale(n int) error // errStopping when stopping
	requestStop()
}

// controlServer serves the control API (HTTP+JSON) on the control socket.
type controlServer struct {
	srv *http.Server
	wg  sync.WaitGroup
}

func serveControl(ln net.Listener, c controller) *controlServer {
	s := &controlServer{srv: boundedServer(peerCheck(controlHandler(c)), 0)}
	s.srv.ConnContext = func(ctx context.Context, conn net.Conn) context.Context {
		if lc, ok := conn.(*limitConn); ok {
			conn = lc.Conn
		}
		return context.WithValue(ctx, peerKey{}, peerUID(conn))
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.srv.Serve(newLimitListener(ln, maxEndpointConns)) // returns ErrServerClosed after Shutdown
	}()
	return s
}

// shutdown stops serving, letting answers in flight finish until ctx ends.
func (s *controlServer) shutdown(ctx context.Context) {
	s.srv.Shutdown(ctx)
	s.wg.Wait()
}

// controlHandler is the control API (without the peer check).
func controlHandler(c controller) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.status(r.URL.Query().Get("http") == "1"))
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		canary := time.Duration(-1)
		if v := r.URL.Query().Get("canary"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				writeJSON(w, http.StatusBadRequest, ctlResult{Error: fmt.Sprintf("canary=%q: want a duration such as 30s (0: no canary)", v)})
				return
			}
			canary = d
		}
		awaitReply(w, r, func(reply chan error) bool { return c.reload(canary, reply) })
	})
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, r *http.Request) { awaitReply(w, r, c.restart) })
	mux.HandleFunc("POST /scale", func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query().Get("workers")
		n, err := strconv.Atoi(v)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, ctlResult{Error: fmt.Sprintf("workers=%q: not a number", v)})
			return
		}
		err = c.scale(n)
		if errors.Is(err, ErrConfig) {
			writeJSON(w, http.StatusBadRequest, ctlResult{Error: err.Error()})
			return
		}
		reply(w, err)
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		c.requestStop()
	})
	return mux
}

// awaitReply starts an operation that answers on a channel, and answers
// the request with its outcome (or not at all, if the caller leaves).
func awaitReply(w http.ResponseWriter, r *http.Request, start func(chan error) bool) {
	ch := make(chan error, 1)
	if !start(ch) {
		reply(w, errStopping)
		return
	}
	select {
	case err := <-ch:
		reply(w, err)
	case <-r.Context().Done():
	}
}

type ctlResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	PID   int    `json:"pid,omitempty"`
}

func reply(w http.ResponseWriter, err error) {
	if err != nil {
		writeJSON(w, http.StatusConflict, ctlResult{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ctlResult{OK: true, PID: os.Getpid()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

type peerKey struct{}

// peerUID is the uid of the process at the other end of a unix socket
// (SO_PEERCRED), or -1.
func peerUID(c net.Conn) int {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return -1
	}
	uid := -1
	rc.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			uid = int(cred.Uid)
		}
	})
	return uid
}

// peerCheck refuses callers that are neither root nor the master's user.
// The socket's mode (0600) already keeps others out; this holds even if
// the file's mode or directory is changed.
func peerCheck(h http.Handler) http.Handler {
	me := os.Getuid()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid, _ := r.Context().Value(peerKey{}).(int)
		if uid != 0 && uid != me {
			writeJSON(w, http.StatusForbidden, ctlResult{Error: fmt.Sprintf("uid %d may not control this master", uid)})
			return
		}
		h.ServeHTTP(w, r)
	})
}
