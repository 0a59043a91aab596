// Command fastworker is preforkd (the library: server.Run) running a
// fasthttp worker instead of net/http: the master opens the socket, and
// every worker serves its inherited listener with fasthttp.Server.Serve,
// answering the same one-line answer as the preforkd demo's GET /.
//
//	fastworker -workers 2 -listen http=tcp://127.0.0.1:8080 -metrics 127.0.0.1:9100 \
//	           -control /tmp/ctl.sock -pidfile /tmp/pid
//
// The flags are a subset of preforkd's, with the same meaning. Workers get
// the master's arguments and parse them too (harmlessly). GOMAXPROCS is left
// at its default in every worker.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/preforkd/preforkd/listener"
	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/server"
	"github.com/preforkd/preforkd/worker"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fastworker:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("fastworker", flag.ContinueOnError)
	workers := fs.Int("workers", runtime.NumCPU(), "worker processes")
	listen := fs.String("listen", "http=tcp://127.0.0.1:8080", "the workers' socket, NAME=SCHEME://ADDR (its name must be http)")
	metricsAddr := fs.String("metrics", "off", "HOST:PORT of the master's /metrics, or off")
	control := fs.String("control", "off", "control socket path, or off")
	pidfile := fs.String("pidfile", "", "pid file, written once the workers are ready")
	grace := fs.Duration("grace", 10*time.Second, "how long a stopping worker may drain")
	logFormat := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	spec, err := listener.Parse(*listen)
	if err != nil {
		return err
	}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if *logFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, nil)
	}
	logger := slog.New(h)
	cfg := server.Config{
		Master: master.Config{Workers: *workers, Listen: []listener.Spec{spec}, Control: *control,
			PIDFile: *pidfile, Grace: *grace, Logger: logger, Version: "fastworker"},
		Worker: worker.Options{Logger: logger},
	}
	if *metricsAddr != "off" {
		cfg.Master.MetricsAddr = *metricsAddr
	}
	return server.Run(context.Background(), cfg, app)
}

// app serves the inherited "http" listener with fasthttp until the worker
// is told to stop, then shuts fasthttp down within the grace period.
func app(ctx context.Context, w *worker.Worker) error {
	ln, err := w.Listener("http")
	if err != nil {
		return err
	}
	line := fmt.Sprintf("preforkd demo worker=%d pid=%d generation=%d version=v1\n", w.Slot(), os.Getpid(), w.Generation())
	srv := &fasthttp.Server{
		Handler: func(c *fasthttp.RequestCtx) {
			c.SetContentType("text/plain; charset=utf-8")
			c.WriteString(line)
		},
		NoDefaultServerHeader: true,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if err := w.Ready(); err != nil {
		srv.Shutdown()
		<-served
		return err
	}
	select {
	case err := <-served:
		return err
	case <-w.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), w.Grace())
	defer cancel()
	err = srv.ShutdownWithContext(sctx)
	<-served
	return err
}
