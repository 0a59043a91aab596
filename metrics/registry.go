package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewWorkerRegistry returns a new registry (never the global one) holding the
// Go runtime collector and the process collector, for a worker to add its own
// metrics to and to serve to the master (package server does). The process
// series are client_golang's (same names and meaning); on Linux they are
// read with a few system calls instead of parsing five /proc files, because
// the master asks every worker at every scrape.
func NewWorkerRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		newProcessCollector(),
	)
	return r
}
