package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/preforkd/preforkd/internal/aggregate"
	"github.com/preforkd/preforkd/internal/shim"
	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/metrics"
	"github.com/preforkd/preforkd/worker"
)

// Config configures both roles.
type Config struct {
	// Master configures the master role.
	Master master.Config
	// Worker configures the worker runtime (its MapState is set by Run
	// when left nil).
	Worker worker.Options
}

// App is the program a worker runs. ctx is the worker's context (it ends
// on SIGTERM or master death); the app drains and returns then. A non-nil
// error is logged and makes the worker exit 1.
type App func(ctx context.Context, w *worker.Worker) error

// Run runs the role this process was started in: the exec shim of an
// external worker (never returns on success), a worker (runs app), or the
// master (supervises until stopped). See master.Run for the master's
// returns.
func Run(ctx context.Context, cfg Config, app App) error {
	if shim.Is() {
		return shim.Run()
	}
	if worker.IsWorker() {
		return RunWorker(cfg.Worker, app)
	}
	return master.Run(ctx, cfg.Master)
}

// RunWorker runs app with the worker runtime and closes it afterwards.
func RunWorker(opts worker.Options, app App) error {
	if app == nil {
		return errors.New("server: no app to run in the worker")
	}
	if opts.MapState == nil {
		opts.MapState = mapState
	}
	if opts.Registry == nil {
		opts.Registry = metrics.NewWorkerRegistry()
	}
	w, err := worker.New(opts)
	if err != nil {
		return err
	}
	defer w.Close()
	if f := w.MetricsFile(); f != nil {
		// Closed before the worker: it sends the master a last snapshot,
		// so that the counters of the drain are not lost.
		ws := aggregate.NewWorkerServer(f, opts.Registry)
		defer ws.Close()
	}
	if err := app(w.Context(), w); err != nil {
		return fmt.Errorf("worker %d: %w", w.Slot(), err)
	}
	return nil
}
