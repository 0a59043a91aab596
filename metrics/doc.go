// Package metrics gives a worker its Prometheus registry and HTTP
// middleware. The master scrapes every worker's registry over the metrics
// socket it hands each worker, and serves them all, with its own metrics, on
// one /metrics endpoint; every worker series is labelled worker="<slot>"
// (the slot, never the pid, so that a restart makes no new series), and
// counters never go backwards across worker restarts and upgrades.
//
// Package server sets all of this up: a Go worker's registry is
// w.Registry(), and server.ServeHTTP wraps the handler in HTTPMetrics. To
// add your own metrics, register them on w.Registry():
//
//	jobs := prometheus.NewCounter(prometheus.CounterOpts{Name: "app_jobs_total", Help: "Jobs done."})
//	w.Registry().MustRegister(jobs)
//
// Without package server:
//
//	reg := metrics.NewWorkerRegistry()   // Go runtime + process collectors
//	hm := metrics.NewHTTPMetrics(reg)    // http_requests_total, …
//	http.Serve(l, hm.Wrap(mux))
package metrics
