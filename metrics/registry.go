package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewWorkerRegistry returns a new registry (never the global one) holding the
// Go runtime collector and the process collector, for a worker to add its own
// metrics to and to serve to the master (package server does).
func NewWorkerRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return r
}
