package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// okHandler allocates nothing itself, so that allocs/op is the wrapper's.
var okHandler = func() http.Handler {
	body := []byte("ok\n")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
}()

// BenchmarkHTTPMiddleware is the per-request cost of Wrap.
func BenchmarkHTTPMiddleware(b *testing.B) {
	h := NewHTTPMetrics(prometheus.NewRegistry()).Wrap(okHandler)
	benchHandler(b, h)
}

// BenchmarkHTTPMiddlewarePromhttp is the same instrumentation with
// promhttp's three wrappers, for comparison.
func BenchmarkHTTPMiddlewarePromhttp(b *testing.B) {
	m := NewHTTPMetrics(prometheus.NewRegistry())
	inFlight := prometheus.NewGauge(prometheus.GaugeOpts{Name: "http_requests_in_flight_promhttp", Help: "promhttp's gauge."})
	h := promhttp.InstrumentHandlerInFlight(inFlight,
		promhttp.InstrumentHandlerDuration(m.duration, promhttp.InstrumentHandlerCounter(m.requests, okHandler)))
	benchHandler(b, h)
}

func benchHandler(b *testing.B, h http.Handler) {
	req := httptest.NewRequest("GET", "/", nil)
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}
