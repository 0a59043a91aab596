// Package worker is the runtime of a Go program running as a preforkd
// worker: the inherited listeners by name, the shared state region, Ready,
// automatic heartbeats, and a context that ends on SIGTERM or when the
// master dies.
//
//	w, err := worker.New(worker.Options{})
//	if err != nil { … }
//	defer w.Close()
//	ln, err := w.Listener("http")
//	go serve(ln)
//	w.Ready()
//	<-w.Context().Done() // SIGTERM, SIGINT, or the master is gone
//	drain(w.Grace())
//
// Most programs use package server, which does all of this. Package worker
// never imports package master: the contract between them is the process
// environment (systemd's LISTEN_FDS and NOTIFY_SOCKET, and the PREFORK_*
// variables that carry the shared state, the metrics socket and the
// lifeline). NewLocal runs the same API in the calling process, on
// listeners the caller opened (package server's development mode, and
// tests of an app).
package worker
