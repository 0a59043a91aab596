//go:build linux

package master

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/preforkd/preforkd/internal/aggregate"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// master composes the parts of one master process: its resources, the
// supervisor, the upgrade, the succession link (inside resources), the
// metrics aggregator, and the control and metrics servers. Its loop
// goroutine (loop, then finish) owns the fields below owner and runs the
// functions others hand it through do.
type master struct {
	cfg        Config
	upg        *tableflip.Upgrader
	log        *slog.Logger
	sigs       chan os.Signal
	started    time.Time
	readMemory func(pid int) (Memory, error)
	gen        int
	prev       linkMsg // what the previous master handed over
	phases     phases  // moments of this master's start (the "master ready" line)
	stateKey   string  // Config.StateKey's answer before the region was built ("": none)
	stateFile  string  // the region's tableflip file name, for the successor
	statePages string  // the region's page mode (hugetlb, thp, 4k)

	owner
	res          *resources
	agg          *aggregate.Aggregator
	startHist    prometheus.Histogram
	procs        *execProcs
	sup          *supervisor
	up           *upgrade
	metricsSrv   *metricsServer // nil: no metrics endpoint
	control      *controlServer // nil: no control socket
	final        chan struct{}  // closed: send final totals to the successor
	finalSent    chan struct{}
	parentExited chan struct{} // closed when the previous master has exited
	stopReq      chan struct{} // a control-socket stop (size 1: one is enough)
	cancelSup    context.CancelFunc
	quit         chan struct{} // closed by close: background goroutines end
	bg           sync.WaitGroup
	removeWG     sync.WaitGroup // aggregator removals of exited workers
	ready        bool           // the first workers were all ready
	canary       *canaryStage   // nil: no canary stage (set in start, never changed)
	ramp         *ramp          // nil: no surge control in this new master
	out, errOut  *outputSink    // nil: workers' output is not labelled
	surgeRetired atomic.Int64   // workers retired for a successor's surge
	spareMu      sync.Mutex
	spareMetrics map[int]*os.File // unpromoted spares' metrics sockets, by pid
}

func (m *master) loop(ctx context.Context) error {
	first := m.sup.first
	parentExited := m.parentExited
	// The canary stage (a new master with a canary): its window's end, its
	// worker's exit, and then the poll until every worker is ready.
	var canaryEnd <-chan time.Time
	var canaryFailed <-chan linkMsg
	var allReady *time.Ticker
	var allReadyC <-chan time.Time
	if m.canary != nil {
		canaryFailed = m.canary.failed
	}
	defer func() {
		if allReady != nil {
			allReady.Stop()
		}
	}()
	for {
		select {
		case <-parentExited:
			parentExited = nil
		case <-first:
			first = nil
			switch {
			case m.canary != nil:
				canaryEnd = m.beginCanary()
			case m.ramp != nil:
				allReady = time.NewTicker(10 * time.Millisecond)
				allReadyC = allReady.C
			default:
				m.becomeReady()
			}
		case <-canaryEnd:
			rb, failed, wait := m.judgeCanary()
			if wait > 0 {
				canaryEnd = time.After(wait)
				continue
			}
			canaryEnd, canaryFailed = nil, nil
			if failed {
				return m.rollBack(rb)
			}
			if m.ramp == nil {
				m.passCanary()
			}
			allReady = time.NewTicker(10 * time.Millisecond)
			allReadyC = allReady.C
		case rb := <-canaryFailed:
			return m.rollBack(rb)
		case <-allReadyC:
			if m.allReady() && (m.ramp == nil || m.rampStep()) {
				allReady.Stop()
				allReady, allReadyC = nil, nil
				m.becomeReady()
			}
		case <-m.res.link.retired:
			if m.ramp != nil {
				m.onRetired()
			}
		case sig := <-m.sigs:
			if done := m.onSignal(sig.(syscall.Signal)); done {
				return m.finish(sig == unix.SIGQUIT)
			}
		case f := <-m.ops:
			f()
		case <-m.stopReq:
			return m.finish(false)
		case err := <-m.up.results:
			if m.up.finished(err) {
				return m.finish(false)
			} else {
				if m.metricsSrv != nil {
					m.metricsSrv.resume() // in case the successor got as far as announcing itself
				}
				m.restoreSurge()
			}
		case <-ctx.Done():
			return m.finish(false)
		case <-m.sup.done:
			return m.finish(false)
		}
	}
}

func (m *master) becomeReady() {
	if err := m.res.link.announce(); err != nil {
		m.log.Warn("cannot tell the previous master our pid", "err", err)
	}
	if err := m.upg.Ready(); err != nil {
		m.log.Error("cannot complete readiness", "err", err)
	}
	m.ready = true
	if !m.upg.HasParent() {
		m.res.sd.Send("READY=1", "STATUS=serving, generation "+strconv.Itoa(m.gen))
	}
	m.phases.ready = time.Now()
	m.sup.do(func() { m.phases.spawned = m.sup.spawnedAt; m.sup.enableSpares() })
	m.log.Info("master ready", append([]any{"generation", m.gen, "took", time.Since(m.started).Round(time.Millisecond)}, m.phases.attrs()...)...)
}

// onSignal acts on a signal; true means stop now.
func (m *master) onSignal(sig syscall.Signal) bool {
	m.log.Info("signal received", "signal", unix.SignalName(sig))
	switch sig {
	case unix.SIGHUP:
		m.beginUpgrade(-1, nil)
	case unix.SIGUSR1:
		m.sup.do(func() { m.sup.startRolling("rolling", make(chan error, 1)) })
	case unix.SIGTTIN, unix.SIGTTOU:
		delta := 1
		if sig == unix.SIGTTOU {
			delta = -1
		}
		var err error
		m.sup.do(func() { err = m.sup.scale(m.sup.desired + delta) })
		if err != nil {
			m.log.Warn("cannot scale", "err", err)
		}
	case unix.SIGTERM, unix.SIGINT, unix.SIGQUIT:
		return true
	}
	return false
}

// beginUpgrade runs in the loop goroutine. canary is this upgrade's canary
// duration; negative: the configured one.
func (m *master) beginUpgrade(canary time.Duration, reply chan error) {
	if canary < 0 {
		canary = m.cfg.Canary.Duration
	}
	g := gate{stopping: m.up.stopping, ready: m.ready, parentGone: isClosed(m.parentExited), pid1: os.Getpid() == 1}
	m.up.begin(g, func() linkMsg {
		m.res.link.dropStaleAnnouncements()
		offer := linkMsg{CanaryMs: canary.Milliseconds(), Surge: m.cfg.UpgradeSurge,
			StateKey: m.stateKey, StateFile: m.stateFile, StatePages: m.statePages}
		if m.res.region != nil {
			offer.StateSize = m.res.region.Size()
		}
		m.sup.do(func() { offer.Workers, offer.Restarts = m.sup.desired, m.sup.restartCounts() })
		return offer
	}, reply)
}

// finish stops every worker (gracefully unless fast) and returns when they
// are gone, with the supervisor's error if the start failed. Signals still
// count: SIGQUIT or a second SIGINT/SIGTERM during a graceful stop makes it
// fast.
func (m *master) finish(fast bool) error {
	// STOPPING=1 is for the service's own stop: not after a hand-over, and
	// not from a new master that never became ready (a rolled-back canary,
	// a stop during an upgrade), which is not the service manager's main
	// process.
	if !m.up.handedOver && (!m.upg.HasParent() || m.ready) {
		m.res.sd.Send("STOPPING=1")
	}
	m.up.abandon()
	m.sup.do(func() { m.sup.stop(!fast) })
	// Stop the endpoints while serving the loop's requests: a control
	// handler may be waiting for the loop.
	endpointsDone := make(chan struct{})
	go func() { defer close(endpointsDone); m.stopEndpoints() }()
	defer func() { <-endpointsDone }()
	for {
		select {
		case <-m.sup.done:
			if m.up.handedOver {
				m.handOverTotals()
			}
			m.log.Info("master stopped", "generation", m.gen)
			return m.sup.err
		case sig := <-m.sigs:
			if isStopSignal(sig) {
				m.log.Info("stopping fast", "signal", unix.SignalName(sig.(syscall.Signal)))
				m.sup.do(func() { m.sup.stop(false) })
			}
		case err := <-m.up.results:
			m.up.finished(err)
		case f := <-m.ops:
			f()
		case <-m.stopReq:
		}
	}
}

// handOverTotals sends the final metrics totals to the new master once
// every worker's final counters are in; it carries them from then on.
func (m *master) handOverTotals() {
	m.removeWG.Wait()
	close(m.final)
	select {
	case <-m.finalSent:
	case <-time.After(2 * time.Second):
		m.log.Warn("could not hand the final metrics totals over in time")
	}
}

// close releases everything, after loop returned (or open failed); after
// a final stop (not a hand-over) it also removes unix socket files and our
// pid file.
func (m *master) close() {
	close(m.done) // do returns false from now on
	close(m.quit)
	if m.cancelSup != nil {
		m.cancelSup()
	}
	if m.res != nil {
		m.res.link.close() // its goroutines use the aggregator
		m.res.notify.close()
	}
	m.bg.Wait()
	if m.procs != nil {
		m.procs.close()
		m.procs.stopAdopted()
	}
	for _, s := range []*outputSink{m.out, m.errOut} {
		if s != nil {
			s.close() // every worker is gone: nothing more comes
		}
	}
	m.removeWG.Wait()
	if m.agg != nil {
		m.agg.Close()
	}
	handedOver := m.up != nil && m.up.handedOver
	if m.up != nil {
		m.up.close()
	}
	// Stop unlinks the unix sockets: right at a final stop, wrong for a new
	// master that never became ready (they are the old generation's).
	if !m.upg.HasParent() || m.ready {
		m.upg.Stop()
	}
	if !handedOver && m.cfg.PIDFile != "" {
		if b, err := os.ReadFile(m.cfg.PIDFile); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
			os.Remove(m.cfg.PIDFile)
		}
	}
	if m.res != nil {
		m.res.close()
	}
}

// isStopSignal is true for the signals that stop a master.
func isStopSignal(sig os.Signal) bool {
	return sig == unix.SIGTERM || sig == unix.SIGINT || sig == unix.SIGQUIT
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
