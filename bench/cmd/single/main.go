// Command single is the baseline of the throughput comparison: one
// net/http process (GOMAXPROCS left at its default, one per CPU) serving the
// same one-line answer as the preforkd demo's GET /, with the same routing
// (a ServeMux pattern) and headers.
//
//	single -addr 127.0.0.1:8080 [-instrument] [-pprof 127.0.0.1:6060]
//
// With -instrument it adds what every preforkd net/http worker does per
// request on top of the app's handler: the Prometheus HTTP metrics
// (metrics.NewHTTPMetrics) and the lossless drain's connection tracking
// (server.HTTP). It is a diagnostic: the same per-request work in one
// process, which separates the cost of that work from the cost of the
// process model.
//
// With -pprof it serves net/http/pprof and expvar (/debug/vars: the
// runtime's memstats, for allocations per request) on a second listener
// of its own (never on the measured one), so that the bench can profile a
// turn: the handlers cost nothing until asked.
package main

import (
	"expvar"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
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
	pprofAddr := flag.String("pprof", "", "host:port of a side listener serving /debug/pprof/ (loopback only in the bench); empty: none")
	flag.Parse()
	if *pprofAddr != "" {
		pln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			return err
		}
		side := http.NewServeMux()
		side.HandleFunc("/debug/pprof/", pprof.Index)
		side.HandleFunc("/debug/pprof/profile", pprof.Profile)
		side.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		side.Handle("/debug/vars", expvar.Handler())
		go http.Serve(pln, side)
	}
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
