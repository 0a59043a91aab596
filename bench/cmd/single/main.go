// Command single is the baseline of the throughput comparison: one
// net/http process (GOMAXPROCS left at its default, one per CPU) serving the
// same one-line answer as the preforkd demo's GET /, with the same routing
// (a ServeMux pattern) and headers.
//
//	single -addr 127.0.0.1:8080 [-instrument]
//
// With -instrument it adds what every preforkd net/http worker does per
// request on top of the app's handler: the Prometheus HTTP metrics
// (metrics.NewHTTPMetrics) and the lossless drain's connection tracking
// (server.HTTP). It is a diagnostic: the same per-request work in one
// process, which separates the cost of that work from the cost of the
// process model.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/preforkd/preforkd/metrics"
	"github.com/preforkd/preforkd/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "single:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8080", "host:port to serve on (loopback only in the bench)")
	instrument := flag.Bool("instrument", false, "add preforkd's per-request work: HTTP metrics and drain tracking")
	flag.Parse()
	line := fmt.Sprintf("preforkd demo worker=0 pid=%d generation=1 version=v1\n", os.Getpid())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(line))
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if *instrument {
		h := metrics.NewHTTPMetrics(metrics.NewWorkerRegistry()).Wrap(mux)
		return (&server.HTTP{Handler: h}).Serve(ln)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	return srv.Serve(ln)
}
