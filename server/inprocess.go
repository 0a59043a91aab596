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
	lns := map[string]net.Listener{}
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	specs := cfg.Listen
	if len(specs) == 0 {
		sp, err := listener.Parse(defaultListen)
		if err != nil {
			return err
		}
		specs = []listener.Spec{sp}
	}
	for _, sp := range specs {
		if sp.Packet() {
			closeAll()
			return fmt.Errorf("-listen %s: datagram sockets are not supported in development mode", sp)
		}
		l, err := net.Listen(sp.Network, sp.Address)
		if err != nil {
			closeAll()
			return fmt.Errorf("-listen %s: %w", sp, err)
		}
		lns[sp.Name] = l
	}
	var state []byte
	if cfg.LoadState != nil {
		r, err := cfg.LoadState()
		if err != nil {
			closeAll()
			return err
		}
		defer r.Close()
		if state, err = readRegion(r); err != nil {
			closeAll()
			return err
		}
	}
	w := worker.NewLocal(opts, worker.Local{Listeners: lns, State: state, Grace: cfg.Grace})
	defer w.Close()
	if log != nil {
		log.Info("development mode: " + runtime.GOOS + " runs the app in-process as one worker; preforking needs Linux")
	}
	stop := context.AfterFunc(ctx, func() { w.Close() })
	defer stop()
	err := runApp(w, app)
	if errors.Is(err, ErrNotReady) && ctx.Err() != nil {
		return nil
	}
	return err
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
