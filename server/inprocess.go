package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"

	"github.com/preforkd/preforkd/listener"
	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/metrics"
	"github.com/preforkd/preforkd/worker"
)

// RunInProcess runs app in this process as the only worker, on cfg's
// stream listeners opened here (datagram listeners are not supported),
// with cfg.LoadState's bytes as the state: the development mode that Run
// and Main use off Linux, where preforking is not available, so that the
// same main runs on a laptop. It logs so once at start. There is no
// master: no restarts, upgrades, control socket or metrics endpoint. It
// returns when ctx ends or on SIGTERM/SIGINT, after the app's drain.
func RunInProcess(ctx context.Context, cfg master.Config, opts worker.Options, app App) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = opts.Logger
	}
	if opts.Logger == nil {
		opts.Logger = log
	}
	if opts.Registry == nil {
		opts.Registry = metrics.NewWorkerRegistry()
	}
	lns, err := listenAll(cfg.Listen)
	if err != nil {
		return err
	}
	state, err := loadLocalState(cfg.LoadState)
	if err != nil {
		for _, l := range lns {
			l.Close()
		}
		return err
	}
	w := worker.NewLocal(opts, worker.Local{Listeners: lns, State: state, Grace: cfg.Grace})
	defer w.Close()
	if log != nil {
		log.Info("development mode: " + runtime.GOOS + " runs the app in-process as one worker; preforking needs Linux")
	}
	stop := context.AfterFunc(ctx, func() { w.Close() })
	defer stop()
	err = runApp(w, app)
	if errors.Is(err, ErrNotReady) && ctx.Err() != nil {
		return nil
	}
	return err
}

// listenAll opens the stream listeners of specs (master.Config's default
// when there are none) here, or none of them.
func listenAll(specs []listener.Spec) (map[string]net.Listener, error) {
	if len(specs) == 0 {
		sp, err := listener.Parse(defaultListen)
		if err != nil {
			return nil, err
		}
		specs = []listener.Spec{sp}
	}
	lns := map[string]net.Listener{}
	for _, sp := range specs {
		var err error
		var l net.Listener
		if sp.Packet() {
			err = fmt.Errorf("-listen %s: datagram sockets are not supported in development mode", sp)
		} else if l, err = net.Listen(sp.Network, sp.Address); err != nil {
			err = fmt.Errorf("-listen %s: %w", sp, err)
		}
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns[sp.Name] = l
	}
	return lns, nil
}

// loadLocalState runs the master's LoadState and reads the region into
// memory; nil without one.
func loadLocalState(load func() (master.Region, error)) ([]byte, error) {
	if load == nil {
		return nil, nil
	}
	r, err := load()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readRegion(r)
}

// defaultListen is master.Config's default Listen.
const defaultListen = "http=tcp://127.0.0.1:8080"

// readRegion reads the state into memory (there are no other processes to
// share it with).
func readRegion(r master.Region) ([]byte, error) {
	b, err := io.ReadAll(io.NewSectionReader(r.File(), 0, r.Size()))
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return b, nil
}
