//go:build linux

package master

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// errLoading answers control requests that need workers while the state
// loads.
var errLoading = errors.New("the master is still loading its shared state; try again once it serves")

// loadState runs cfg.LoadState. A first master (no predecessor) answers on
// its metrics and control sockets meanwhile, so that a long load is seen
// as one: /healthz says 503 "loading the shared state", /metrics has the
// master's own process series, `ctl status` reports the phase, and a stop
// (control or signal) is kept for when the load returns, before any worker
// starts. A new master at an upgrade stays silent: the old one still
// serves those sockets, and answers for the generation.
func (m *master) loadState() error {
	if m.cfg.LoadState == nil {
		return nil
	}
	if m.cfg.StateKey != nil {
		// Before the load: a file changed during the load then gets a key
		// that differs from the next one's, never the same key for
		// different bytes.
		key, err := m.cfg.StateKey()
		if err != nil {
			m.log.Warn("cannot fingerprint the shared state; building it", "err", err)
			key = "" // unknown: never taken over, never offered
		}
		m.stateKey = key
	}
	if r := m.takeOverState(); r != nil {
		m.res.region = r
		m.phases.reused = true
		m.statePages = m.prev.StatePages
		return nil
	}
	if !m.upg.HasParent() {
		m.res.sd.Send("STATUS=loading the shared state")
		stop := m.serveWhileLoading()
		defer stop()
	}
	region, err := m.cfg.LoadState()
	if err != nil {
		return err
	}
	m.res.region = region
	m.offerState(region)
	m.statePages = pageMode(region)
	attrs := []any{"size", region.Size(), "pages", m.statePages}
	if m.statePages == "4k" && region.Size() >= 2<<20 {
		attrs = append(attrs, "hint", "huge pages would make workers' first reads and exits faster: reserve vm.nr_hugepages, or set transparent_hugepage/shmem_enabled to advise (README, Huge pages)")
	}
	m.log.Info("state region loaded", attrs...)
	return nil
}

// pageMode is a region's page mode, when it says (state.Region does).
func pageMode(r Region) string {
	if pm, ok := r.(interface{ PageMode() string }); ok {
		return pm.PageMode()
	}
	return ""
}

// serveWhileLoading starts the interim endpoints and returns the function
// that stops them (leaving the sockets open for the real ones).
func (m *master) serveWhileLoading() (stop func()) {
	var ms *metricsServer
	if m.res.metrics != nil {
		reg := prometheus.NewRegistry()
		prometheus.WrapRegistererWithPrefix("prefork_master_", reg).MustRegister(
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
		ms = newMetricsServer(m.res.metrics, reg, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "loading the shared state\n", http.StatusServiceUnavailable)
		}, m.log)
		ms.resume()
	}
	var cs *controlServer
	if m.res.control != nil {
		// A duplicate, as for metrics: shutting the interim server down
		// closes the listener it serves.
		if ln, err := net.FileListener(m.res.control.File()); err != nil {
			m.log.Warn("cannot answer on the control socket while the state loads", "err", err)
		} else {
			cs = serveControl(ln, loadingController{m})
		}
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if cs != nil {
			cs.shutdown(ctx)
		}
		if ms != nil {
			ms.pause()
		}
	}
}

// stoppedWhileLoading reports whether a stop came in during the load: a
// control-socket stop, or SIGTERM, SIGINT or SIGQUIT. Other signals stay
// queued for the loop.
func (m *master) stoppedWhileLoading() bool {
	stop := false
	select {
	case <-m.stopReq:
		stop = true
	default:
	}
	var keep []os.Signal
	for drained := false; !drained; {
		select {
		case sig := <-m.sigs:
			if isStopSignal(sig) {
				stop = true
			} else {
				keep = append(keep, sig)
			}
		default:
			drained = true
		}
	}
	for _, sig := range keep {
		m.sigs <- sig // room: we just took at least as many
	}
	return stop
}

// loadingController is the control API while the state loads.
type loadingController struct{ m *master }

func (c loadingController) status(bool) Status {
	return Status{PID: os.Getpid(), Generation: 1, Version: c.m.cfg.Version, Desired: c.m.cfg.Workers,
		Uptime: time.Since(c.m.started).Seconds(), Phase: phaseLoading, Slots: []SlotStatus{}}
}

func (c loadingController) reload(_ time.Duration, reply chan error) bool {
	reply <- errLoading
	return true
}
func (c loadingController) restart(reply chan error) bool { reply <- errLoading; return true }
func (c loadingController) scale(int) error               { return errLoading }
func (c loadingController) requestStop()                  { c.m.requestStop() }
