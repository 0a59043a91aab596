//go:build linux

package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/preforkd/preforkd/internal/sdnotify"
	"github.com/preforkd/preforkd/listener"
	"github.com/preforkd/preforkd/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Run runs a master until it is stopped (SIGTERM, SIGINT, SIGQUIT, a
// control-socket stop, or ctx) or has handed over to a new master after an
// upgrade. It returns nil then, once every worker of its generation is
// gone. It returns an error, having started no worker, when the
// configuration or a listener is bad. Run must be called once per process.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
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
	m := &master{cfg: cfg, upg: upg, log: cfg.Logger, sigs: sigs, started: time.Now(), readMemory: readMemory}
	defer m.closeAll()
	if err := m.setup(); err != nil {
		if !upg.HasParent() {
			upg.Stop() // a first start that failed removes what it bound
		}
		return err
	}
	return m.loop(ctx)
}

type master struct {
	cfg     Config
	upg     *tableflip.Upgrader
	log     *slog.Logger
	sigs    chan os.Signal
	started time.Time
	gen     int

	socks    []*listener.Socket
	metrics  *listener.Socket
	control  *listener.Socket
	region   Region
	notify   *notifySocket
	lifeR    *os.File
	lifeW    *os.File
	handoff  *handoff
	sd       *sdnotify.Conn
	procs    *execProcs
	sup      *supervisor
	servers  []*http.Server
	quit     chan struct{}
	noteDone chan struct{}

	upgrading     bool
	upgradeBegan  time.Time
	upgradeRes    chan error
	upgradeReply  []chan error
	upgrades      map[string]uint64 // by result
	ctlReqs       chan func()       // run in the loop goroutine (control socket)
	readMemory    func(pid int) (Memory, error)
	prev          handoffMsg // what the previous master handed over
	metricsMu     sync.Mutex
	metricsSrv    *http.Server // nil while paused
	metricsMux    *http.ServeMux
	agg           *metrics.Aggregator // workers' metrics, carried totals
	startHist     prometheus.Histogram
	pred          *predLink // the previous master, while it runs
	predDone      chan struct{}
	succDone      chan struct{}
	finalCh       chan struct{} // closed: send final totals to the successor
	finalSent     chan struct{}
	removeWG      sync.WaitGroup // aggregator removals of exited workers
	stopAsked     bool
	isReady       bool        // the first workers were all ready
	handedOver    atomic.Bool // an upgrade succeeded: a new master serves
	finishing     bool        // finish began (loop goroutine)
	upgradingFlag atomic.Bool // m.upgrading, for the reaper goroutine
	reaperDone    chan struct{}
	parentExited  chan struct{} // closed when the previous master has exited
}

// parentGone reports whether the previous master (if any) has exited:
// tableflip allows the next upgrade only then.
func (m *master) parentGone() bool {
	select {
	case <-m.parentExited:
		return true
	default:
		return false
	}
}

func (m *master) setup() error {
	m.quit = make(chan struct{})
	m.upgradeRes = make(chan error, 1)
	m.upgrades = map[string]uint64{}
	m.ctlReqs = make(chan func())
	var err error
	if m.handoff, err = newHandoff(m.upg.Fds); err != nil {
		return err
	}
	prev, err := m.handoff.receive(5 * time.Second)
	if err != nil {
		return err
	}
	m.gen = 1
	if m.upg.HasParent() {
		m.gen = prev.Generation + 1
		if prev.Workers > 0 {
			m.cfg.Workers = prev.Workers // a count changed at run time carries over
		}
		m.prev = prev
		for k, v := range prev.Upgrades {
			m.upgrades[k] = v
		}
	}
	m.log = m.log.With("master", os.Getpid())
	var act *listener.Inherited
	if !m.upg.HasParent() && os.Getenv(listener.EnvFds) != "" {
		// Socket activation: systemd (or systemd-socket-activate) bound
		// the sockets. Upgrades then inherit them through tableflip.
		if act, err = listener.FromEnv(); err != nil {
			return fmt.Errorf("socket activation: %w", err)
		}
		m.log.Info("using sockets from socket activation", "names", act.Names())
	}
	if m.socks, err = listener.OpenActivated(m.upg.Fds, m.cfg.Listen, act); err != nil {
		if act != nil {
			act.Close()
		}
		return err
	}
	if m.cfg.MetricsAddr != "" {
		socks, err := listener.Open(m.upg.Fds, []listener.Spec{{Name: "metrics", Network: "tcp", Address: m.cfg.MetricsAddr}})
		if err != nil {
			return fmt.Errorf("-metrics %s: %w", m.cfg.MetricsAddr, errors.Unwrap(err))
		}
		m.metrics = socks[0]
	}
	if m.cfg.Control != "off" {
		socks, err := listener.Open(m.upg.Fds, []listener.Spec{{Name: "control", Network: "unix", Address: m.cfg.Control}})
		if err != nil {
			return fmt.Errorf("-control %s: %w", m.cfg.Control, errors.Unwrap(err))
		}
		m.control = socks[0]
		if err := os.Chmod(m.cfg.Control, 0o600); err != nil {
			return fmt.Errorf("-control %s: %w", m.cfg.Control, err)
		}
	}
	if m.cfg.LoadState != nil {
		if m.region, err = m.cfg.LoadState(); err != nil {
			return err
		}
	}
	m.agg = metrics.NewAggregator(metrics.AggregatorOptions{Logger: m.log})
	m.startHist = newStartHistogram()
	if m.notify, err = listenNotify(); err != nil {
		return err
	}
	// The read end goes to every worker through ExtraFiles. A pipe made by
	// os.Pipe would switch to blocking mode at each start (Fd(), the same
	// trap as the listeners'), hanging workers' reads of it; one wrapped by
	// os.NewFile keeps its mode.
	var pfd [2]int
	if err = unix.Pipe2(pfd[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return fmt.Errorf("lifeline pipe: %w", err)
	}
	m.lifeR, m.lifeW = os.NewFile(uintptr(pfd[0]), "lifeline"), os.NewFile(uintptr(pfd[1]), "lifeline-w")
	if m.sd, err = sdnotify.Dial(os.Getenv("NOTIFY_SOCKET")); err != nil {
		m.log.Warn("cannot reach the service manager's NOTIFY_SOCKET", "err", err)
	}
	return nil
}

// spawnSpec builds what every worker of this master gets (DESIGN.md,
// "Contract: master → worker hand-off").
func (m *master) spawnSpec() spawnSpec {
	sp := spawnSpec{path: "/proc/self/exe", args: os.Args, cred: m.cfg.Credential}
	env := workerEnv(os.Environ())
	if len(m.cfg.Command) > 0 {
		sp.args = append([]string{os.Args[0]}, m.cfg.Command...)
		env = append(env, EnvExecShim+"=1")
	}
	sp.files = listener.Files(m.socks)
	sp.nonblock = sp.files
	env = append(env, listener.Env(m.socks)...)
	if m.region != nil {
		env = append(env, EnvStateFd+"="+strconv.Itoa(3+len(sp.files)), EnvStateSize+"="+strconv.FormatInt(m.region.Size(), 10))
		sp.files = append(sp.files, m.region.File())
	}
	env = append(env, EnvMasterFd+"="+strconv.Itoa(3+len(sp.files)))
	sp.files = append(sp.files, m.lifeR)
	sp.nonblock = append(sp.nonblock, m.lifeR)
	sp.perWorker = m.metricsSocket
	env = append(env,
		"NOTIFY_SOCKET="+m.notify.addr,
		EnvMasterPid+"="+strconv.Itoa(os.Getpid()),
		EnvGrace+"="+m.cfg.Grace.String(),
	)
	if os.Getenv("GOMAXPROCS") == "" {
		// N workers share the CPUs: one P per worker's share (as fasthttp's
		// prefork does), so that idle Ps don't spin against the other
		// workers. A GOMAXPROCS in the master's environment wins. The
		// count is fixed at the master's start (a scaled worker count
		// takes effect at the next upgrade).
		env = append(env, "GOMAXPROCS="+strconv.Itoa(max(1, runtime.NumCPU()/m.cfg.Workers)))
	}
	if m.cfg.MaxRequests > 0 {
		env = append(env, EnvMaxRequests+"="+strconv.Itoa(m.cfg.MaxRequests))
	}
	if m.cfg.Heartbeat > 0 {
		env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(m.cfg.Heartbeat.Microseconds(), 10))
	}
	sp.env = env
	return sp
}

func (m *master) loop(ctx context.Context) error {
	exits := make(chan exitEvent)
	notes := make(chan noteEvent)
	m.procs = newExecProcs(m.spawnSpec(), exits)
	m.sup = newSupervisor(superConfig{
		desired: m.cfg.Workers, gen: m.gen, grace: m.cfg.Grace, heartbeat: m.cfg.Heartbeat,
		startTimeout: m.cfg.StartTimeout, readyDelay: m.cfg.ReadyDelay, backoffMin: m.cfg.BackoffMin,
		backoffMax: m.cfg.BackoffMax, stable: m.cfg.StablePeriod, log: m.log, hooks: m.hooks(),
		maxRSS: m.cfg.MaxRSS, observeStart: func(d time.Duration) { m.startHist.Observe(d.Seconds()) },
	}, m.procs, exits, notes)
	for _, r := range m.prev.Restarts {
		m.sup.stats.restarts[restartKey{r.Slot, r.Reason}] += r.N
	}
	m.noteDone = make(chan struct{})
	go func() { defer close(m.noteDone); m.notify.serve(notes, m.quit) }()
	m.finalCh, m.finalSent, m.succDone = make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() { defer close(m.succDone); m.succLoop(m.finalCh, m.finalSent) }()
	if m.handoff.pred != nil {
		m.pred = m.startPredLink()
	}
	supCtx, cancelSup := context.WithCancel(context.Background())
	defer cancelSup()
	go m.sup.run(supCtx)
	m.parentExited = make(chan struct{})
	go func() {
		// Returns at once without a parent; otherwise when it exits (or at
		// our own exit, when supCtx is cancelled).
		if err := m.upg.WaitForParent(supCtx); err == nil {
			close(m.parentExited)
		}
	}()
	m.serveEndpoints()
	if os.Getpid() == 1 {
		m.reaperDone = make(chan struct{})
		go func() { defer close(m.reaperDone); m.runReaper() }()
	}
	m.log.Info("master started", "generation", m.gen, "workers", m.cfg.Workers, "listen", specsString(m.socks), "version", m.cfg.Version)

	first := m.sup.first
	ctxDone := ctx.Done()
	parentExited := m.parentExited
	for {
		select {
		case <-parentExited:
			parentExited = nil
		case <-first:
			first = nil
			m.becomeReady()
		case sig := <-m.sigs:
			if done := m.onSignal(sig.(syscall.Signal)); done {
				return m.finish(sig == unix.SIGQUIT)
			}
		case f := <-m.ctlReqs:
			f()
			if m.stopAsked {
				return m.finish(false)
			}
		case err := <-m.upgradeRes:
			if m.upgradeDone(err) {
				return m.finish(false)
			}
		case <-ctxDone:
			return m.finish(false)
		case <-m.sup.done:
			return m.finish(false)
		}
	}
}

func (m *master) becomeReady() {
	if err := m.handoff.announce(); err != nil {
		m.log.Warn("cannot tell the previous master our pid", "err", err)
	}
	if err := m.upg.Ready(); err != nil {
		m.log.Error("cannot complete readiness", "err", err)
	}
	m.isReady = true
	if !m.upg.HasParent() {
		m.sd.Send("READY=1", "STATUS=serving, generation "+strconv.Itoa(m.gen))
	}
	m.log.Info("master ready", "generation", m.gen, "took", time.Since(m.started).Round(time.Millisecond))
}

// onSignal acts on a signal; true means stop now.
func (m *master) onSignal(sig syscall.Signal) bool {
	m.log.Info("signal received", "signal", unix.SignalName(sig))
	switch sig {
	case unix.SIGHUP:
		m.beginUpgrade(nil)
	case unix.SIGUSR1:
		reply := make(chan error, 1)
		m.sup.do(func() { m.sup.startRolling("rolling", reply) })
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

func (m *master) beginUpgrade(reply chan error) {
	refuse := ""
	switch {
	case m.finishing:
		refuse = "this master is stopping"
	case m.upgrading:
		refuse = "an upgrade is already running"
	case os.Getpid() == 1:
		// The old master exits after the hand-over, and PID 1 exiting
		// ends the container: run under an init (docker run --init, tini)
		// to upgrade in place, or use a rolling restart (SIGUSR1).
		refuse = "running as PID 1; upgrading would end the container (use an init such as tini, or SIGUSR1)"
	case !m.isReady:
		refuse = "this master is not ready yet"
	case !m.parentGone():
		refuse = "the previous master is still draining"
	}
	if refuse != "" {
		m.log.Warn("upgrade refused: " + refuse)
		m.upgrades["refused"]++
		if reply != nil {
			reply <- errors.New(refuse)
		}
		return
	}
	for len(m.handoff.pids) > 0 {
		<-m.handoff.pids // announcements of earlier, failed attempts
	}
	m.upgrading = true
	m.upgradingFlag.Store(true)
	m.upgradeBegan = time.Now()
	if reply != nil {
		m.upgradeReply = append(m.upgradeReply, reply)
	}
	offer := handoffMsg{Generation: m.gen, Upgrades: map[string]uint64{}}
	m.sup.do(func() {
		offer.Workers = m.sup.desired
		for k, v := range m.sup.stats.restarts {
			offer.Restarts = append(offer.Restarts, restartCount{Slot: k.slot, Reason: k.reason, N: v})
		}
	})
	for k, v := range m.upgrades {
		offer.Upgrades[k] = v
	}
	offer.Upgrades["success"]++ // counted by the successor if this one succeeds
	if err := m.handoff.offer(offer); err != nil {
		m.log.Warn("hand-off offer failed", "err", err)
	}
	m.sd.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10), "STATUS=upgrading")
	m.log.Info("upgrade begins", "generation", m.gen)
	go func() { m.upgradeRes <- m.upg.Upgrade() }()
}

// upgradeDone handles the outcome of an upgrade; true means this master
// has been replaced and must drain and exit.
func (m *master) upgradeDone(err error) bool {
	m.upgrading = false
	m.upgradingFlag.Store(false)
	took := time.Since(m.upgradeBegan).Round(time.Millisecond)
	replies := m.upgradeReply
	m.upgradeReply = nil
	if err != nil {
		result := "failed"
		if msg := err.Error(); strings.Contains(msg, "hasn't exited") || strings.Contains(msg, "not ready yet") {
			result = "refused"
		}
		m.upgrades[result]++
		if m.finishing {
			m.log.Info("upgrade abandoned: stopping", "err", err)
		} else {
			m.resumeMetrics() // in case the successor got as far as announcing itself
			m.log.Error("upgrade "+result+"; this generation keeps serving", "err", err, "took", took)
			m.sd.Send("READY=1", "STATUS=serving, generation "+strconv.Itoa(m.gen)+" (upgrade "+result+")")
		}
		for _, r := range replies {
			r <- fmt.Errorf("upgrade %s: %w", result, err)
		}
		return false
	}
	m.upgrades["success"]++
	m.handedOver.Store(true)
	pid, perr := m.handoff.successorPid(2 * time.Second)
	if perr == nil {
		m.sd.Send("MAINPID="+strconv.Itoa(pid), "READY=1", "STATUS=handed over to pid "+strconv.Itoa(pid))
	}
	m.log.Info("upgrade done; draining this generation", "new_master", pid, "took", took)
	for _, r := range replies {
		r <- nil
	}
	return true
}

// finish stops every worker (gracefully unless fast) and returns when they
// are gone. Signals still count: SIGQUIT or a second SIGINT/SIGTERM during
// a graceful stop makes it fast.
func (m *master) finish(fast bool) error {
	m.finishing = true
	if !m.upgradeHandedOver() {
		m.sd.Send("STOPPING=1")
		if m.upgrading {
			// A stop wins over an upgrade in flight: tableflip kills the
			// new master, and Upgrade returns an error.
			m.log.Info("stopping: abandoning the upgrade in progress")
			m.upg.Stop()
		}
	}
	m.sup.do(func() { m.sup.stop(!fast) })
	// Stop the endpoints while serving the loop's requests: a control
	// handler may be waiting for the loop.
	endpointsDone := make(chan struct{})
	go func() { defer close(endpointsDone); m.stopEndpoints() }()
	defer func() { <-endpointsDone }()
	for {
		select {
		case <-m.sup.done:
			if m.upgradeHandedOver() {
				// Every worker's final counters are in: hand the totals
				// to the new master, which carries them from now on.
				m.removeWG.Wait()
				close(m.finalCh)
				select {
				case <-m.finalSent:
				case <-time.After(2 * time.Second):
					m.log.Warn("could not hand the final metrics totals over in time")
				}
			}
			m.log.Info("master stopped", "generation", m.gen)
			return nil
		case sig := <-m.sigs:
			if s := sig.(syscall.Signal); s == unix.SIGQUIT || s == unix.SIGINT || s == unix.SIGTERM {
				m.log.Info("stopping fast", "signal", unix.SignalName(s))
				m.sup.do(func() { m.sup.stop(false) })
			}
		case err := <-m.upgradeRes:
			m.upgradeDone(err)
		case f := <-m.ctlReqs:
			f()
		}
	}
}

func (m *master) upgradeHandedOver() bool { return m.handedOver.Load() }

// closeAll releases everything; after a final stop (not a hand-over) it
// also removes unix socket files and our pid file.
func (m *master) closeAll() {
	handedOver := m.upgradeHandedOver()
	if m.quit != nil {
		close(m.quit)
	}
	if m.succDone != nil {
		<-m.succDone
	}
	if m.pred != nil {
		m.pred.f.Close()
		<-m.predDone
	}
	if m.notify != nil {
		m.notify.close()
	}
	if m.noteDone != nil {
		<-m.noteDone
	}
	if m.reaperDone != nil {
		<-m.reaperDone
	}
	if m.procs != nil {
		m.procs.close()
	}
	m.removeWG.Wait()
	if m.agg != nil {
		m.agg.Close()
	}
	// Stop unlinks the unix sockets: right at a final stop, wrong for a new
	// master that never became ready (they are the old generation's).
	if !m.upg.HasParent() || m.isReady {
		m.upg.Stop()
	}
	if !handedOver && m.cfg.PIDFile != "" {
		if b, err := os.ReadFile(m.cfg.PIDFile); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
			os.Remove(m.cfg.PIDFile)
		}
	}
	listener.Close(m.socks)
	for _, s := range []*listener.Socket{m.metrics, m.control} {
		if s != nil {
			s.Close()
		}
	}
	for _, f := range []*os.File{m.lifeR, m.lifeW} {
		if f != nil {
			f.Close()
		}
	}
	if m.region != nil {
		m.region.Close()
	}
	if m.handoff != nil {
		m.handoff.close()
	}
	m.sd.Close()
}

func specsString(socks []*listener.Socket) string {
	var b strings.Builder
	for i, s := range socks {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s.Spec.String())
	}
	return b.String()
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}

// hooks adds the master's own bookkeeping to the configured hooks: an
// exited worker's metrics are folded into its slot's carried totals (in
// the background: Remove waits briefly for a final snapshot).
func (m *master) hooks() Hooks {
	h := m.cfg.Hooks
	user := h.WorkerExited
	h.WorkerExited = func(slot, pid, gen int, status string) {
		m.removeWG.Add(1)
		go func() { defer m.removeWG.Done(); m.agg.Remove(pid) }()
		if user != nil {
			user(slot, pid, gen, status)
		}
	}
	return h
}

// metricsSocket gives each worker its end of a socketpair over which the
// master asks for its metrics (PREFORK_METRICS_FD); the master's end goes
// to the aggregator once the worker started.
func (m *master) metricsSocket(slot, fd int) ([]*os.File, []string, func(int, error), error) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("metrics socket: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(sp[0]), "metrics"), os.NewFile(uintptr(sp[1]), "metrics-worker")
	after := func(pid int, err error) {
		theirs.Close()
		if err != nil {
			ours.Close()
			return
		}
		m.agg.Add(slot, pid, ours)
	}
	return []*os.File{theirs}, []string{EnvMetricsFd + "=" + strconv.Itoa(fd)}, after, nil
}
