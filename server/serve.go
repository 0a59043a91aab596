package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/preforkd/preforkd/worker"
)

// Server is anything Serve can run: *http.Server, server.HTTP, server.TCP,
// a fasthttp server (through a one-line adapter of ShutdownWithContext),
// or a *grpc.Server through GRPC.
type Server interface {
	// Serve accepts on ln until Shutdown.
	Serve(ln net.Listener) error
	// Shutdown stops accepting and drains, until ctx ends.
	Shutdown(ctx context.Context) error
}

// Serve serves s on the worker's listener named name, tells the master the
// worker is ready, and when the worker's context ends (SIGTERM, master
// death) calls Shutdown with the worker's grace period as deadline. It
// returns nil after a clean drain; the error of Serve if it stopped on its
// own (the worker then exits and the master replaces it); or Shutdown's.
//
// A plain *http.Server's Shutdown answers no request it reads after the
// drain began; use ServeHTTP (server.HTTP) for a drain that loses nothing.
func Serve(w *worker.Worker, name string, s Server) error {
	ln, err := w.Listener(name)
	if err != nil {
		return err
	}
	errc := make(chan error, 1) // Serve's result: never blocks
	go func() { errc <- s.Serve(ln) }()
	var first error
	if err := w.Ready(); err != nil {
		first = err
	} else {
		select {
		case err := <-errc:
			errc <- err // for the wait below
			first = fmt.Errorf("server: serving %q stopped before the drain: %w", name, served(err))
		case <-w.Done():
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.Grace())
	defer cancel()
	if err := s.Shutdown(ctx); err != nil && first == nil {
		first = err
	}
	select {
	case err := <-errc:
		if err := served(err); err != nil && first == nil && !errors.Is(err, net.ErrClosed) {
			first = err
		}
	case <-ctx.Done():
	}
	return first
}

// served maps the "closed as asked" results of Serve to nil.
func served(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
