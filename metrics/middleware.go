package metrics

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTPMetrics instruments HTTP handlers of a worker.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *inFlight

	// base is a monotonic clock reading: a request's duration is two
	// readings of the monotonic clock against it (time.Since), where
	// time.Now would also read the wall clock at the start.
	base time.Time

	// Label children, made on first use and from then on read with one
	// atomic load (no map lookup, no label hashing, no lock): the
	// histogram by method index, the counter by method index and status
	// code. A method that never had a request has no histogram series.
	observers [len(methods) + 1]atomic.Pointer[observer]
	counters  [len(methods) + 1][maxCode]atomic.Pointer[counter]

	// writers recycles the statusWriters: a handler must not use its
	// ResponseWriter after it returned (net/http's own rule), so the
	// wrapper can be reused then, and a request allocates nothing here.
	writers sync.Pool
}

// maxCode bounds the status codes counted through the array; others (a
// handler writing 999) go through the CounterVec.
const maxCode = 600

type observer struct{ prometheus.Observer }
type counter struct{ prometheus.Counter }

// inFlight is the http_requests_in_flight gauge kept as one integer: a
// request adds 1 and then -1 with one atomic instruction each, where a
// prometheus.Gauge runs a compare-and-swap loop over a float (retried
// while another CPU's request changes it). Two HTTPMetrics on one
// registry share it.
type inFlight struct {
	n    atomic.Int64
	desc *prometheus.Desc
}

func newInFlight() *inFlight {
	return &inFlight{desc: prometheus.NewDesc("http_requests_in_flight", "HTTP requests being served.", nil, nil)}
}

// Describe and Collect make it a prometheus.Collector (a gauge).
func (g *inFlight) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *inFlight) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(g.n.Load()))
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
		inFlight: newInFlight(),
		base:     time.Now(),
	}
	if reg == nil {
		return m
	}
	m.requests = register(reg, m.requests)
	m.duration = register(reg, m.duration)
	m.inFlight = register(reg, m.inFlight)
	return m
}

func (m *HTTPMetrics) observer(method int) prometheus.Observer {
	if o := m.observers[method].Load(); o != nil {
		return o.Observer
	}
	o := &observer{m.duration.WithLabelValues(methodLabel(method))}
	m.observers[method].CompareAndSwap(nil, o) // a racing first use made the same child
	return o.Observer
}

func (m *HTTPMetrics) counter(method, code int) prometheus.Counter {
	if code < 0 || code >= maxCode {
		return m.requests.WithLabelValues(strconv.Itoa(code), methodLabel(method))
	}
	if c := m.counters[method][code].Load(); c != nil {
		return c.Counter
	}
	c := &counter{m.requests.WithLabelValues(strconv.Itoa(code), methodLabel(method))}
	m.counters[method][code].CompareAndSwap(nil, c)
	return c.Counter
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
		m.inFlight.n.Add(1)
		start := time.Since(m.base)
		rec, _ := m.writers.Get().(*statusWriter)
		if rec == nil {
			rec = new(statusWriter)
		}
		rec.ResponseWriter, rec.code = w, 0
		panicked := true
		defer func() {
			mi := methodIndex(r.Method)
			m.observer(mi).Observe((time.Since(m.base) - start).Seconds())
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
			m.inFlight.n.Add(-1)
			if !panicked { // after a panic the handler's goroutines may still hold it
				rec.ResponseWriter = nil
				m.writers.Put(rec)
			}
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
