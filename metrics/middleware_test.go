package metrics

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestHTTPMiddlewareLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewHTTPMetrics(reg)
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
		case "/flush":
			if _, ok := w.(http.Flusher); !ok {
				t.Error("the wrapped writer lost http.Flusher")
			}
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("ResponseController.Flush: %v", err)
			}
		case "/silent":
		case "/odd":
			w.WriteHeader(799) // past the array of codes
		default:
			w.Write([]byte("ok"))
		}
	}))
	for _, c := range []struct{ method, path string }{
		{"GET", "/"}, {"GET", "/"}, {"POST", "/missing"}, {"BREW", "/"}, {"GET", "/flush"}, {"DELETE", "/silent"}, {"PUT", "/odd"}, {"PUT", "/odd"},
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(c.method, c.path, nil))
	}
	want := `
# HELP http_requests_total HTTP requests completed, by status code and method.
# TYPE http_requests_total counter
http_requests_total{code="200",method="delete"} 1
http_requests_total{code="200",method="get"} 3
http_requests_total{code="200",method="unknown"} 1
http_requests_total{code="404",method="post"} 1
http_requests_total{code="799",method="put"} 2
`
	if err := testutil.CollectAndCompare(m.requests, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.inFlight); got != 0 {
		t.Errorf("in flight %v after every request finished", got)
	}
	// A histogram only for the methods that had requests: get, post,
	// unknown, delete, put.
	if n := testutil.CollectAndCount(m.duration); n != 5 {
		t.Errorf("%d duration series, want 5 (one per method that had a request)", n)
	}
}

// A panicking handler counts as a 500, and the panic still reaches
// net/http (the connection is aborted, the server goes on).
func TestHTTPMiddlewarePanicIs500(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewHTTPMetrics(reg)
	srv := httptest.NewServer(m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			panic("boom")
		}
		w.Write([]byte("ok"))
	})))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // net/http logs the panic
	defer srv.Close()
	if resp, err := http.Get(srv.URL + "/boom"); err == nil {
		resp.Body.Close()
		t.Errorf("a panicking handler answered %s; net/http should abort the connection", resp.Status)
	}
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatalf("the server did not survive the panic: %v", err)
	}
	resp.Body.Close()
	want := `
# HELP http_requests_total HTTP requests completed, by status code and method.
# TYPE http_requests_total counter
http_requests_total{code="200",method="get"} 1
http_requests_total{code="500",method="get"} 1
`
	if err := testutil.CollectAndCompare(m.requests, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.inFlight); got != 0 {
		t.Errorf("in flight %v after the panic", got)
	}
}
