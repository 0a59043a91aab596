// Command metrics is a preforkd app with Prometheus metrics of its own. A
// worker registers them on w.Registry(); the master's /metrics serves them
// with every worker's series labelled worker="<slot>", next to the HTTP
// metrics every server.ServeHTTP app gets (http_requests_total, …).
// Counters of a worker that was replaced are carried over, so they never go
// backwards.
//
// The binary is the whole preforkd command (see -h):
//
//	go build -o /tmp/example-metrics ./examples/metrics
//	/tmp/example-metrics -workers 2 -listen http=tcp://127.0.0.1:8080 -metrics 127.0.0.1:9100
//	curl 127.0.0.1:8080/hello/ann
//	curl -s 127.0.0.1:9100/metrics | grep example_
//	# example_greetings_total{greeting="hello",worker="1"} 1
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/preforkd/preforkd/server"
	"github.com/preforkd/preforkd/worker"
)

func main() {
	server.Main(app, server.WithName("example-metrics"))
}

// app runs in every worker: it registers its metrics and serves greetings
// on the listener named "http".
func app(_ context.Context, w *worker.Worker) error {
	reg := w.Registry()
	if reg == nil {
		return errors.New("the worker has no metrics registry")
	}
	greetings := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "example_greetings_total",
		Help: "Greetings answered, by greeting.",
	}, []string{"greeting"})
	if err := reg.Register(greetings); err != nil {
		return fmt.Errorf("register example_greetings_total: %w", err)
	}
	mux := http.NewServeMux()
	for _, g := range []string{"hello", "bye"} {
		c := greetings.WithLabelValues(g) // exported at 0 before the first greeting
		mux.HandleFunc("GET /"+g+"/{name}", func(rw http.ResponseWriter, req *http.Request) {
			c.Inc()
			fmt.Fprintf(rw, "%s, %s (worker %d)\n", g, req.PathValue("name"), w.Slot())
		})
	}
	return server.ServeHTTP(w, "http", mux)
}
