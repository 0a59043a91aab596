//go:build linux

package master

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/preforkd/preforkd/internal/sockets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsServer serves GET /metrics and GET /healthz on the master's
// metrics listener (inherited across upgrades). It can pause: an old master
// stops answering as soon as its successor announces itself, so that no
// scrape sees the older, smaller totals, and resumes if that upgrade fails.
type metricsServer struct {
	sock *sockets.Socket
	mux  *http.ServeMux
	log  *slog.Logger
	mu   sync.Mutex
	srv  *http.Server // nil while paused
	wg   sync.WaitGroup
}

func newMetricsServer(sock *sockets.Socket, g prometheus.Gatherer, healthz http.HandlerFunc, log *slog.Logger) *metricsServer {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", healthz)
	return &metricsServer{sock: sock, mux: mux, log: log}
}

// resume serves on the listener; a no-op while serving.
func (s *metricsServer) resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	// Serve a duplicate: Shutdown closes the listener it serves, and the
	// socket must stay open (for a later resume, and for the successor).
	ln, err := net.FileListener(s.sock.File())
	if err != nil {
		s.log.Error("cannot serve metrics", "err", err)
		return
	}
	srv := boundedServer(s.mux, metricsWrite)
	s.srv = srv
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		srv.Serve(newLimitListener(ln, maxEndpointConns)) // returns ErrServerClosed after Shutdown
	}()
}

// pause stops serving; answers in flight finish (for up to 2 s). The
// listener stays open.
func (s *metricsServer) pause() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
	s.wg.Wait()
}
