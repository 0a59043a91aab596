package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/preforkd/preforkd/internal/shim"
	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/metrics"
	"github.com/preforkd/preforkd/worker"
)

// Config configures both roles.
type Config struct {
	// Master configures the master role.
	Master master.Config
	// Worker configures the worker runtime (its Registry is set by Run
	// when left nil).
	Worker worker.Options
}

// App is the program a worker runs. ctx is the worker's context (it ends
// on SIGTERM or master death); the app drains and returns then. A non-nil
// error is logged and makes the worker exit 1. The app must call w.Ready
// once it serves (ServeHTTP, Serve and TCP.Run do); an app that returns
// without having done so is an error that says so.
type App func(ctx context.Context, w *worker.Worker) error

// ErrNotReady is returned (wrapped) when an app returns before it called
// w.Ready.
var ErrNotReady = errors.New("the app returned before Ready: call w.Ready() once it serves (or serve with server.ServeHTTP, server.Serve or TCP.Run)")

// Run runs the role this process was started in: the exec shim of an
// external worker (never returns on success), a worker (runs app), or the
// master (supervises until stopped). See master.Run for the master's
// returns. Off Linux it runs app in-process as one worker on the
// configured listeners (a development mode).
//
// Workers are this program run again with the same arguments: everything
// main does before Run, every worker does too.
func Run(ctx context.Context, cfg Config, app App) error {
	if shim.Is() {
		return shim.Run()
	}
	if worker.IsWorker() {
		return RunWorker(cfg.Worker, app)
	}
	return runMaster(ctx, cfg.Master, cfg.Worker, app)
}

// RunWorker runs app with the worker runtime and closes it afterwards.
func RunWorker(opts worker.Options, app App) error {
	if app == nil {
		return errors.New("server: no app to run in the worker")
	}
	if opts.Registry == nil {
		opts.Registry = metrics.NewWorkerRegistry()
	}
	w, err := worker.New(opts)
	if err != nil {
		return err
	}
	defer w.Close()
	return runApp(w, app)
}

// runApp runs app on w, with the readiness guard.
func runApp(w *worker.Worker, app App) error {
	err := app(w.Context(), w)
	if !w.IsReady() {
		if err != nil {
			return fmt.Errorf("worker %d: %w (%w)", w.Slot(), err, ErrNotReady)
		}
		return fmt.Errorf("worker %d: %w", w.Slot(), ErrNotReady)
	}
	if err != nil {
		return fmt.Errorf("worker %d: %w", w.Slot(), err)
	}
	return nil
}
