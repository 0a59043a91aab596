package metrics

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTPMetrics instruments HTTP handlers of a worker.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
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
		return m
	}
	m.requests = register(reg, m.requests)
	m.duration = register(reg, m.duration)
	m.inFlight = register(reg, m.inFlight)
	return m
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

// Wrap returns h instrumented with the three metrics. The returned handler is
// safe for concurrent use.
func (m *HTTPMetrics) Wrap(h http.Handler) http.Handler {
	return promhttp.InstrumentHandlerInFlight(m.inFlight,
		promhttp.InstrumentHandlerDuration(m.duration,
			promhttp.InstrumentHandlerCounter(m.requests, h)))
}
