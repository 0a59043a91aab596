package metrics

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTPMetrics instruments HTTP handlers of a worker.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge

	// Label children resolved once, not per request (a CounterVec lookup
	// hashes the label values every time): by method index, and by method
	// and status code for the counter.
	observers [len(methods) + 1]prometheus.Observer
	counters  sync.Map // uint32(method<<16 | code) → prometheus.Counter
}

// methods are the label values of the standard methods; any other method
// is "unknown".
var methods = [...]string{"get", "head", "post", "put", "patch", "delete", "connect", "options", "trace"}

func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodPatch:
		return 4
	case http.MethodDelete:
		return 5
	case http.MethodConnect:
		return 6
	case http.MethodOptions:
		return 7
	case http.MethodTrace:
		return 8
	}
	return len(methods)
}

func methodLabel(i int) string {
	if i < len(methods) {
		return methods[i]
	}
	return "unknown"
}

// NewHTTPMetrics registers on reg (never the global registry):
//
//	http_requests_total{code,method}            counter
//	http_request_duration_seconds{method}       histogram, prometheus.DefBuckets
//	http_requests_in_flight                     gauge
//
// method is the lower-case method name for the standard methods and
// "unknown" for others, code the status code (as promhttp does). If reg
// already holds these collectors (NewHTTPMetrics called twice on one
// registry), the registered ones are shared. It panics on any other
// registration conflict, as MustRegister does. A nil reg registers nothing.
func NewHTTPMetrics(reg prometheus.Registerer) *HTTPMetrics {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests completed, by status code and method.",
		}, []string{"code", "method"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time from the start of an HTTP request until its handler returned, by method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
	}
	if reg == nil {
		return m.resolve()
	}
	m.requests = register(reg, m.requests)
	m.duration = register(reg, m.duration)
	m.inFlight = register(reg, m.inFlight)
	return m.resolve()
}

func (m *HTTPMetrics) resolve() *HTTPMetrics {
	for i := range m.observers {
		m.observers[i] = m.duration.WithLabelValues(methodLabel(i))
	}
	return m
}

func (m *HTTPMetrics) counter(method, code int) prometheus.Counter {
	key := uint32(method)<<16 | uint32(code&0xffff)
	if c, ok := m.counters.Load(key); ok {
		return c.(prometheus.Counter)
	}
	c := m.requests.WithLabelValues(strconv.Itoa(code), methodLabel(method))
	m.counters.Store(key, c)
	return c
}

// register registers c on reg, or returns the equal collector already there.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err)
}

// Wrap returns h instrumented with the three metrics. A handler that
// panics is counted as code="500" (the panic goes on up to net/http, which
// aborts the connection). The returned handler is
// safe for concurrent use. The ResponseWriter h sees passes Flush, Hijack
// and ReadFrom through, and unwraps for http.ResponseController.
func (m *HTTPMetrics) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.inFlight.Inc()
		start := time.Now()
		rec := &statusWriter{ResponseWriter: w}
		panicked := true
		defer func() {
			mi := methodIndex(r.Method)
			m.observers[mi].Observe(time.Since(start).Seconds())
			code := rec.code
			switch {
			case panicked && (code == 0 || code < 500):
				// net/http aborts the connection: the client gets no
				// answer, which counts as a server error.
				code = http.StatusInternalServerError
			case code == 0:
				code = http.StatusOK
			}
			m.counter(mi, code).Inc()
			m.inFlight.Dec()
		}()
		h.ServeHTTP(rec, r)
		panicked = false
	})
}

// statusWriter records the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if hj, ok := s.ResponseWriter.(http.Hijacker); ok {
		return hj.Hijack()
	}
	return nil, nil, http.ErrNotSupported
}

func (s *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return io.Copy(s.ResponseWriter, r)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
