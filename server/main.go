package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/preforkd/preforkd/internal/cli"
	"github.com/preforkd/preforkd/internal/shim"
	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/worker"
)

// Option configures Main.
type Option func(*mainConfig)

type mainConfig struct {
	name, version string
	flags         func(*flag.FlagSet)
	state         func() ([]byte, error)
	stateKey      func() (string, error)
}

// WithName sets the program's name, used in messages, -h, -version and the
// default control socket's name. Defaults to the executable's base name.
func WithName(name string) Option { return func(c *mainConfig) { c.name = name } }

// WithVersion sets the version -version prints and status reports.
// Defaults to the main module's version from the build information ("dev"
// for a build from a work tree).
func WithVersion(v string) Option { return func(c *mainConfig) { c.version = v } }

// WithFlags registers the program's own flags beside preforkd's; they are
// parsed together, in the master and in every worker (workers run with the
// same arguments), so the app reads the variables the function bound.
func WithFlags(register func(fs *flag.FlagSet)) Option {
	return func(c *mainConfig) { c.flags = register }
}

// WithState gives the shared read-only state when -state is not given: the
// master calls load once per generation (again at each upgrade), and every
// worker sees the bytes as w.State() (for example a table.Build result,
// opened with table.Open).
func WithState(load func() ([]byte, error)) Option {
	return func(c *mainConfig) { c.state = load }
}

// WithStateKey gives a cheap fingerprint of what WithState's load would
// build (a data version, a file's identity): at an upgrade, when the new
// binary's key equals the running one's, the new master takes the sealed
// region over instead of calling load, and the new generation starts
// sooner and shares the old one's pages. The key must change whenever the
// bytes would. With -state FILE the key is the file's identity and
// content hash, always.
func WithStateKey(key func() (string, error)) Option {
	return func(c *mainConfig) { c.stateKey = key }
}

// Main gives the program the whole preforkd command line, with app as the
// built-in worker, and exits: every flag of the preforkd supervisor
// (-workers, -listen, -metrics, -control, -grace, …, with the same
// defaults and checks), `NAME ctl …`, `NAME state build …` and -version.
// Arguments after "--" run another command as the workers instead.
//
//	func main() {
//		server.Main(func(ctx context.Context, w *worker.Worker) error {
//			return server.ServeHTTP(w, "http", mux)
//		})
//	}
//
// Workers are this program run again with the same arguments: what main
// does before Main, every worker does too. Exit status: 0 after a stop, 1
// for an error at run time (one line on stderr, "NAME: …"), 2 for a bad
// command line. Off Linux the app runs in-process (see RunInProcess).
func Main(app App, opts ...Option) {
	c := mainConfig{name: filepath.Base(os.Args[0]), version: buildVersion()}
	for _, o := range opts {
		o(&c)
	}
	if shim.Is() {
		err := shim.Run()
		fmt.Fprintln(os.Stderr, c.name+": "+err.Error())
		os.Exit(127)
	}
	p := cli.Program{Name: c.name, Version: c.version, Flags: c.flags, State: c.state, StateKey: c.stateKey,
		Worker: func(log *slog.Logger) error { return RunWorker(worker.Options{Logger: log}, app) },
		Master: func(ctx context.Context, cfg master.Config) error {
			return runMaster(ctx, cfg, worker.Options{Logger: cfg.Logger}, app)
		},
	}
	err := p.Run(os.Args[1:], os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, c.name+": "+err.Error())
	}
	os.Exit(cli.ExitCode(err))
}

// buildVersion is the main module's version, or "dev".
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
