//go:build linux

package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"
)

// serveEndpoints starts the metrics server and the control server on the
// master's (inherited) listeners.
func (m *master) serveEndpoints() {
	if m.metrics != nil {
		m.metricsMux = http.NewServeMux()
		mux := m.metricsMux
		reg := prometheus.NewRegistry()
		// The master's own process and runtime, prefixed so that they do
		// not mix with the workers' process_* and go_* series.
		own := prometheus.WrapRegistererWithPrefix("prefork_master_", reg)
		own.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
		reg.MustRegister(&masterCollector{m: m}, m.startHist)
		mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{reg, m.agg}, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", m.handleHealthz)
		m.resumeMetrics()
	}
	if m.control != nil {
		m.serve(m.control.Listener(), peerCheck(m.controlHandler()), func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerUID(c))
		})
	}
}

// controlHandler is the control API (without the peer check).
func (m *master) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", m.handleStatus)
	mux.HandleFunc("POST /reload", m.handleReload)
	mux.HandleFunc("POST /restart", m.handleRestart)
	mux.HandleFunc("POST /scale", m.handleScale)
	mux.HandleFunc("POST /stop", m.handleStop)
	return mux
}

func (m *master) serve(ln net.Listener, h http.Handler, connCtx func(context.Context, net.Conn) context.Context) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ConnContext: connCtx}
	m.servers = append(m.servers, srv)
	go srv.Serve(ln)
}

// resumeMetrics serves /metrics and /healthz on the metrics listener (again,
// after an upgrade that failed past its successor's pid announcement).
func (m *master) resumeMetrics() {
	m.metricsMu.Lock()
	defer m.metricsMu.Unlock()
	if m.metrics == nil || m.metricsSrv != nil || m.metricsMux == nil {
		return
	}
	// Serve a duplicate: Shutdown closes the listener it serves, and the
	// socket must stay open (for a later resume, and for the successor).
	ln, err := net.FileListener(m.metrics.File())
	if err != nil {
		m.log.Error("cannot serve metrics", "err", err)
		return
	}
	m.metricsSrv = &http.Server{Handler: m.metricsMux, ReadHeaderTimeout: 5 * time.Second}
	go m.metricsSrv.Serve(ln)
}

// pauseMetrics stops serving /metrics; the listener stays open (it is the
// successor's too). Answers in flight finish.
func (m *master) pauseMetrics() {
	m.metricsMu.Lock()
	srv := m.metricsSrv
	m.metricsSrv = nil
	m.metricsMu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
}

// stopEndpoints stops serving metrics and control (the successor, if any,
// serves them on the same sockets), letting answers in flight finish.
func (m *master) stopEndpoints() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range m.servers {
		s.Shutdown(ctx)
	}
	m.servers = nil
	m.pauseMetrics()
}

func (m *master) handleHealthz(w http.ResponseWriter, r *http.Request) {
	n := 0
	m.sup.do(func() {
		for _, sl := range m.sup.slots {
			if sl.cur != nil && sl.cur.state == ready {
				n++
			}
		}
	})
	if n == 0 {
		http.Error(w, "no worker is ready\n", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "ok: %d workers ready\n", n)
}

// Status returns the master's status report.
func (m *master) status() Status {
	var st Status
	if !m.sup.do(func() { st = m.sup.snapshot() }) {
		st.Stopping = true
	}
	st.PID = os.Getpid()
	st.Version = m.cfg.Version
	if m.notify != nil {
		st.NotifyOversized = m.notify.oversized.Load()
		st.NotifyMalformed = m.notify.malformed.Load()
	}
	st.Uptime = time.Since(m.started).Seconds()
	st.Upgrading = m.upgradingNow()
	for i := range st.Slots {
		if pid := st.Slots[i].PID; pid > 0 && m.readMemory != nil {
			if mem, err := m.readMemory(pid); err == nil {
				st.Slots[i].Memory = &mem
			}
		}
	}
	return st
}

func (m *master) upgradingNow() bool {
	var up bool
	m.inLoop(func() { up = m.upgrading })
	return up
}

// inLoop runs f in the master's loop goroutine and waits; false if the
// loop has ended.
func (m *master) inLoop(f func()) bool {
	done := make(chan struct{})
	select {
	case m.ctlReqs <- func() { f(); close(done) }:
		<-done
		return true
	case <-m.sup.done:
		return false
	case <-m.quit:
		return false
	}
}

func (m *master) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, m.status())
}

type ctlResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	PID   int    `json:"pid,omitempty"`
}

func (m *master) reply(w http.ResponseWriter, err error) {
	if err != nil {
		writeJSON(w, http.StatusConflict, ctlResult{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ctlResult{OK: true, PID: os.Getpid()})
}

func (m *master) handleReload(w http.ResponseWriter, r *http.Request) {
	reply := make(chan error, 1)
	if !m.inLoop(func() { m.beginUpgrade(reply) }) {
		m.reply(w, errStopping)
		return
	}
	select {
	case err := <-reply:
		m.reply(w, err)
	case <-r.Context().Done():
	}
}

func (m *master) handleRestart(w http.ResponseWriter, r *http.Request) {
	reply := make(chan error, 1)
	if !m.sup.do(func() { m.sup.startRolling("rolling", reply) }) {
		m.reply(w, errStopping)
		return
	}
	select {
	case err := <-reply:
		m.reply(w, err)
	case <-r.Context().Done():
	}
}

func (m *master) handleScale(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query().Get("workers")
	n, err := strconv.Atoi(v)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ctlResult{Error: fmt.Sprintf("workers=%q: not a number", v)})
		return
	}
	if !m.sup.do(func() { err = m.sup.scale(n) }) {
		err = errStopping
	}
	if errors.Is(err, ErrConfig) {
		writeJSON(w, http.StatusBadRequest, ctlResult{Error: err.Error()})
		return
	}
	m.reply(w, err)
}

func (m *master) handleStop(w http.ResponseWriter, r *http.Request) {
	m.reply(w, nil)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	go m.inLoop(func() { m.stopAsked = true })
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

type peerKey struct{}

// peerUID is the uid of the process at the other end of a unix socket
// (SO_PEERCRED), or -1.
func peerUID(c net.Conn) int {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return -1
	}
	uid := -1
	rc.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			uid = int(cred.Uid)
		}
	})
	return uid
}

// peerCheck refuses callers that are neither root nor the master's user.
// The socket's mode (0600) already keeps others out; this holds even if
// the file's mode or directory is changed.
func peerCheck(h http.Handler) http.Handler {
	me := os.Getuid()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid, _ := r.Context().Value(peerKey{}).(int)
		if uid != 0 && uid != me {
			writeJSON(w, http.StatusForbidden, ctlResult{Error: fmt.Sprintf("uid %d may not control this master", uid)})
			return
		}
		h.ServeHTTP(w, r)
	})
}
