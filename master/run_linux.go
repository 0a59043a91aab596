//go:build linux

package master

import (
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"os/signal"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/preforkd/preforkd/internal/aggregate"
	"github.com/preforkd/preforkd/internal/sockets"
	"golang.org/x/sys/unix"
)

// Run runs a master until it is stopped (SIGTERM, SIGINT, SIGQUIT, a
// control-socket stop, or ctx) or has handed over to a new master after an
// upgrade. It returns nil then, once every worker of its generation is
// gone. It returns an error, having started no worker, when the
// configuration or a listener is bad, or when it is called inside a worker
// (see ErrInWorker); and an error after stopping every worker when the
// first start cannot succeed (see Config.StartAttempts). Run must be called
// once per process.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.prepare(); err != nil {
		return err
	}
	// Signals first: a SIGHUP or SIGTERM that arrives while we start must
	// not kill the master outright.
	sigs := make(chan os.Signal, 16) // one of each kind in flight
	signal.Notify(sigs, unix.SIGHUP, unix.SIGUSR1, unix.SIGTTIN, unix.SIGTTOU, unix.SIGTERM, unix.SIGINT, unix.SIGQUIT)
	defer signal.Stop(sigs)

	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: cfg.UpgradeTimeout, PIDFile: cfg.PIDFile})
	if err != nil {
		return fmt.Errorf("upgrader: %w", err)
	}
	m := &master{cfg: cfg, upg: upg, log: cfg.Logger.With("master", os.Getpid()), sigs: sigs,
		started: time.Now(), phases: phases{init: processInit, run: time.Now()}, readMemory: readMemory, owner: newOwner(), quit: make(chan struct{}),
		stopReq: make(chan struct{}, 1), spareMetrics: map[int]*os.File{}}
	if err := m.open(upg.Fds); err != nil {
		m.close()
		if !upg.HasParent() {
			upg.Stop() // a first start that failed removes what it bound
		}
		return err
	}
	defer m.close()
	if m.stoppedWhileLoading() {
		m.log.Info("stopped while loading the state; no worker was started")
		return nil
	}
	m.start()
	return m.loop(ctx)
}

// open takes over from the previous master (if any) and opens the
// generation's resources.
func (m *master) open(fds *tableflip.Fds) error {
	if err := checkPIDFile(m.cfg.PIDFile); err != nil {
		return err
	}
	var err error
	if m.res, err = openResources(fds, &m.cfg, m.upg.HasParent(), m.log); err != nil {
		return err
	}
	// The workers' sockets must not wake the master at every connection.
	if _, err := sockets.Unpoll(m.res.socks); err != nil {
		m.log.Warn("the workers' sockets stay in the master's poller: each new connection wakes it", "err", err)
	}
	m.gen = 1
	if m.upg.HasParent() {
		if m.prev, err = m.res.link.receive(5 * time.Second); err != nil {
			return err
		}
		m.gen = m.prev.Generation + 1
		if m.prev.Workers > 0 {
			m.cfg.Workers = m.prev.Workers // a count changed at run time carries over
		}
		if m.prev.BeganNs > 0 {
			m.phases.began = time.Unix(0, m.prev.BeganNs)
		}
	}
	m.phases.opened = time.Now()
	// After the offer: it says whether the predecessor's region can be
	// taken over instead of built again.
	if err := m.loadState(); err != nil {
		return err
	}
	m.phases.loaded = time.Now()
	// Descriptors the master inherited without close-on-exec (from a shell
	// or a service manager) must not leak into workers, which may run as
	// another user: our own are all close-on-exec already, and those
	// handed to a worker are dup'ed into place by os/exec.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		m.log.Warn("cannot mark inherited descriptors close-on-exec; they may leak into workers", "err", err)
	}
	if os.Getenv("NOTIFY_SOCKET") != "" && m.cfg.PIDFile == "" && !m.upg.HasParent() {
		m.log.Warn("under a service manager without -pidfile: after an upgrade it would supervise a master that is not its child, and a stop would not be graceful; set -pidfile and the unit's PIDFile= to the same path")
	}
	if err := becomeSubreaper(); err != nil {
		m.log.Warn("cannot become a child subreaper; processes that workers leave outside their process group may outlive them", "err", err)
	}
	m.agg = aggregate.NewAggregator(aggregate.AggregatorOptions{Logger: m.log})
	m.startHist = newStartHistogram()
	m.up = newUpgrade(m.upg, m.res.link, m.res.sd, m.log, m.gen, m.prev.Upgrades, m.cfg.PIDFile)
	maps.Copy(m.up.rollbacks, m.prev.Rollbacks)
	return nil
}

// start starts the workers and every part's goroutines.
func (m *master) start() {
	exits := make(chan exitEvent)
	notes := make(chan noteEvent)
	desired := m.cfg.Workers
	if n := m.prev.Surge; n > 0 && n < desired && m.upg.HasParent() {
		m.ramp = &ramp{full: desired, surge: n}
	}
	if d := time.Duration(m.prev.CanaryMs) * time.Millisecond; d > 0 && m.upg.HasParent() {
		m.canary = newCanaryStage(d, desired)
		desired = 1
	} else if m.ramp != nil {
		desired = m.ramp.surge
	}
	m.res.link.onRetire, m.res.link.awaitExit = m.retireOne, m.awaitExit
	spec := m.spawnSpec()
	if m.cfg.WorkerOutput != "inherit" {
		m.out, m.errOut = newOutputSink(os.Stdout, "stdout", m.log), newOutputSink(os.Stderr, "stderr", m.log)
		spec.out, spec.errOut, spec.json = m.out, m.errOut, m.cfg.WorkerOutput == "json"
	}
	m.procs = newExecProcs(spec, exits, m.cfg.Grace, m.log)
	m.procs.promoted, m.procs.spareGone = m.sparePromoted, m.spareGone
	m.sup = newSupervisor(superConfig{
		desired: desired, gen: m.gen, grace: m.cfg.Grace, heartbeat: m.cfg.Heartbeat,
		startTimeout: m.cfg.StartTimeout, readyDelay: m.cfg.ReadyDelay, backoffMin: m.cfg.BackoffMin,
		backoffMax: m.cfg.BackoffMax, stable: m.cfg.StablePeriod, log: m.log, hooks: m.hooks(),
		maxRSS: m.cfg.MaxRSS, observeStart: func(d time.Duration) { m.startHist.Observe(d.Seconds()) },
		startAttempts: m.cfg.StartAttempts, external: len(m.cfg.Command) > 0, spares: m.cfg.Spare,
	}, m.procs, exits, notes)
	m.sup.carryRestarts(m.prev.Restarts)
	m.final, m.finalSent = make(chan struct{}), make(chan struct{})
	m.res.link.serveSuccessor(m.agg, m.pauseMetrics, m.final, m.finalSent)
	m.res.link.followPredecessor(m.agg)
	supCtx, cancelSup := context.WithCancel(context.Background())
	m.cancelSup = cancelSup
	m.parentExited = make(chan struct{})
	m.goBg(func() { m.res.notify.serve(notes, m.quit) })
	m.goBg(func() { m.sup.run(supCtx) })
	m.goBg(func() {
		// Returns at once without a parent; otherwise when it exits (or at
		// our own exit, when supCtx is cancelled).
		if err := m.upg.WaitForParent(supCtx); err == nil {
			close(m.parentExited)
		}
	})
	m.goBg(m.runReaper)
	m.serveEndpoints()
	m.log.Info("master started", "generation", m.gen, "workers", m.cfg.Workers, "listen", specsString(m.res.socks), "version", m.cfg.Version)
}

// goBg runs f in a goroutine that close waits for.
func (m *master) goBg(f func()) {
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		f()
	}()
}
