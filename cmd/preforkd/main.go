// Command preforkd is a preforking supervisor: it opens the listening
// sockets once and runs N worker processes that serve from them, restarts
// them, and upgrades itself on SIGHUP without losing a connection. Without a
// COMMAND it runs a built-in demo app; with one, every worker is that
// command (any program that speaks systemd socket activation and sd_notify).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/preforkd/preforkd/internal/demo"
	"github.com/preforkd/preforkd/internal/shim"
	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/server"
	"github.com/preforkd/preforkd/worker"
)

// version is set at build time: go build -ldflags "-X main.version=1.2.3".
var version = "dev"

// usageError marks errors in the command line (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func main() {
	if shim.Is() {
		err := shim.Run()
		fmt.Fprintln(os.Stderr, "preforkd: "+err.Error())
		os.Exit(127)
	}
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "preforkd: "+err.Error())
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "ctl":
			return runCtl(args[1:], stdout, stderr)
		case "state":
			return runState(args[1:], stdout, stderr)
		}
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.showVersion {
		fmt.Fprintln(stdout, "preforkd", version)
		return nil
	}
	logger := newLogger(o.logFormat, o.logLevel, stderr)
	slog.SetDefault(logger)
	if worker.IsWorker() {
		return server.RunWorker(worker.Options{Logger: logger}, demo.App(version))
	}
	cfg, err := o.masterConfig(logger)
	if err != nil {
		return err
	}
	// The master checks its configuration itself (for library users too);
	// here a bad value is a usage error.
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	return master.Run(context.Background(), cfg)
}

func newLogger(format, level string, w io.Writer) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level)) // validated by parseFlags
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
