//go:build linux

package master

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/preforkd/preforkd/internal/contract"
	"github.com/preforkd/preforkd/internal/sockets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sys/unix"
)

// The master is the control API's controller.
var _ controller = (*master)(nil)

func (m *master) reload(canary time.Duration, reply chan error) bool {
	if canary >= 0 {
		if err := validCanaryDuration(canary, m.cfg.UpgradeTimeout); err != nil {
			reply <- err
			return true
		}
	}
	return m.do(func() { m.beginUpgrade(canary, reply) })
}

func (m *master) restart(reply chan error) bool {
	return m.sup.do(func() { m.sup.startRolling("rolling", reply) })
}

func (m *master) scale(n int) error {
	var err error
	if !m.sup.do(func() { err = m.sup.scale(n) }) {
		return errStopping
	}
	return err
}

func (m *master) requestStop() {
	select {
	case m.stopReq <- struct{}{}:
	default: // one is already queued
	}
}

// status is the master's status report.
func (m *master) status(withHTTP bool) Status {
	var st Status
	if !m.sup.do(func() { st = m.sup.snapshot() }) {
		st.Stopping = true
	}
	st.PID = os.Getpid()
	st.Version = m.cfg.Version
	st.StatePages = m.statePages
	st.NotifyOversized = m.res.notify.oversized.Load()
	st.NotifyMalformed = m.res.notify.malformed.Load()
	st.Uptime = time.Since(m.started).Seconds()
	st.Upgrading = m.up.running()
	m.do(func() { st.Upgrades, st.Rollbacks = m.up.snapshot() })
	if withHTTP {
		figs := m.slotHTTP()
		for i := range st.Slots {
			st.Slots[i].HTTP = figs[st.Slots[i].Slot]
		}
	}
	for i := range st.Slots {
		if pid := st.Slots[i].PID; pid > 0 && m.readMemory != nil {
			if mem, err := m.readMemory(pid); err == nil {
				st.Slots[i].Memory = &mem
			}
		}
	}
	return st
}

func (m *master) handleHealthz(w http.ResponseWriter, r *http.Request) {
	n := 0
	m.sup.do(func() { n = m.sup.readyCount() })
	if n == 0 {
		http.Error(w, "no worker is ready\n", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "ok: %d workers ready\n", n)
}

// serveEndpoints starts the metrics server and the control server on the
// master's (inherited) listeners.
func (m *master) serveEndpoints() {
	if m.res.metrics != nil {
		reg := prometheus.NewRegistry()
		// The master's own process and runtime, prefixed so that they do
		// not mix with the workers' process_* and go_* series.
		own := prometheus.WrapRegistererWithPrefix("prefork_master_", reg)
		own.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
		reg.MustRegister(&masterCollector{m: m}, m.startHist)
		m.metricsSrv = newMetricsServer(m.res.metrics, scrapeGatherer{own: reg, workers: m.agg}, m.handleHealthz, m.log)
		m.metricsSrv.resume()
	}
	if m.res.control != nil {
		m.control = serveControl(m.res.control.Listener(), m)
	}
}

// pauseMetrics stops answering /metrics: the successor announced itself.
func (m *master) pauseMetrics() {
	if m.metricsSrv != nil {
		m.metricsSrv.pause()
	}
}

// stopEndpoints stops serving metrics and control (the successor, if any,
// serves them on the same sockets), letting answers in flight finish.
func (m *master) stopEndpoints() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if m.control != nil {
		m.control.shutdown(ctx)
	}
	m.pauseMetrics()
}

// hooks adds the master's own bookkeeping to the configured hooks: an
// exited worker's metrics are folded into its slot's carried totals (in
// the background: Remove waits briefly for a final snapshot).
func (m *master) hooks() Hooks {
	h := m.cfg.Hooks
	user := h.WorkerExited
	h.WorkerExited = func(slot, pid, gen int, status string) {
		if c := m.canary; c != nil && slot >= 0 { // a spare is not the canary
			c.exited(pid, status)
		}
		m.removeWG.Add(1)
		go func() { defer m.removeWG.Done(); m.agg.Remove(pid) }()
		if b := m.res.board; b != nil {
			b.Free(pid) // its counters no longer weigh on the others
		}
		if user != nil {
			user(slot, pid, gen, status)
		}
	}
	return h
}

func specsString(socks []*sockets.Socket) string {
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
		if slot < 0 {
			// A spare: its app has not run, and its series get a slot
			// only at its promotion.
			m.spareMu.Lock()
			m.spareMetrics[pid] = ours
			m.spareMu.Unlock()
			return
		}
		m.agg.Add(slot, pid, ours)
	}
	return []*os.File{theirs}, []string{contract.MetricsFd + "=" + strconv.Itoa(fd)}, after, nil
}

// sparePromoted hands a promoted spare's metrics socket to the aggregator
// under its slot.
func (m *master) sparePromoted(pid, slot int) {
	m.spareMu.Lock()
	f := m.spareMetrics[pid]
	delete(m.spareMetrics, pid)
	m.spareMu.Unlock()
	if f != nil {
		m.agg.Add(slot, pid, f)
	}
}

// spareGone closes the metrics socket of a spare that exited unpromoted.
func (m *master) spareGone(pid int) {
	m.spareMu.Lock()
	f := m.spareMetrics[pid]
	delete(m.spareMetrics, pid)
	m.spareMu.Unlock()
	if f != nil {
		f.Close()
	}
}
