// Package cli is the command line that server.Main gives a binary: every
// flag of the preforkd supervisor, `ctl …` (the control socket's client),
// `state build …`, and -version. cmd/preforkd is one such binary (the demo
// app); a user's service built on server.Main is another, with the same
// flags, defaults and messages.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/state"
	"github.com/preforkd/preforkd/worker"
)

// Program is one binary's command line.
type Program struct {
	// Name is the program's name, in messages, usage and the default
	// control socket's name.
	Name string
	// Version is printed by -version and reported in status and logs.
	Version string
	// Flags, when set, registers the program's own flags; they are parsed
	// with the rest (workers run with the same arguments, so they see the
	// same values).
	Flags func(fs *flag.FlagSet)
	// State, when set, builds the shared state when -state is not given.
	State func() ([]byte, error)
	// StateKey, when set with State, fingerprints what State would build,
	// cheaply (master.Config.StateKey): an upgrade whose key is unchanged
	// takes the previous master's region over instead of calling State.
	StateKey func() (string, error)
	// Worker runs the app in this process, which a master started as a
	// worker.
	Worker func(log *slog.Logger) error
	// Master runs the master: master.Run on Linux, the app in-process
	// elsewhere.
	Master func(ctx context.Context, cfg master.Config) error
}

// usageError marks errors in the command line (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// ExitCode is the exit status for what Run returned: 0 for nil (and for a
// -h), 2 for a usage error, 1 otherwise.
func ExitCode(err error) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// Run runs the command line args (without the program name).
func (p Program) Run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "ctl":
			return runCtl(p.Name, args[1:], stdout)
		case "state":
			return runState(p.Name, args[1:], stdout, stderr)
		}
	}
	o, err := parseFlags(p, args, stderr)
	if err != nil {
		return err
	}
	if o.showVersion {
		fmt.Fprintln(stdout, p.Name, p.Version)
		return nil
	}
	logger := newLogger(o.logFormat, o.logLevel, stderr)
	slog.SetDefault(logger)
	if worker.IsWorker() {
		return p.Worker(logger)
	}
	cfg, err := o.masterConfig(p, logger)
	if err != nil {
		return err
	}
	// The master checks its configuration itself (for library users too);
	// here a bad value is a usage error.
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	return p.Master(context.Background(), cfg)
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

// loadState is the master's LoadState: the -state file, else the
// program's own state, else none.
func (p Program) loadState(path string, log *slog.Logger) func() (master.Region, error) {
	switch {
	case path != "":
		return func() (master.Region, error) {
			r, err := state.FromFileProgress(path, loadProgress(path, log, time.Now()))
			if err != nil {
				return nil, fmt.Errorf("-state: %w", err)
			}
			return r, nil
		}
	case p.State != nil:
		return func() (master.Region, error) {
			b, err := p.State()
			if err != nil {
				return nil, fmt.Errorf("state: %w", err)
			}
			return state.FromBytes(p.Name+"-state", b)
		}
	}
	return nil
}

// stateKey is the master's StateKey: the -state file's identity and
// content hash, else the program's own key, else none.
func (p Program) stateKey(path string) func() (string, error) {
	switch {
	case path != "":
		return func() (string, error) { return fileKey(path) }
	case p.State != nil:
		return p.StateKey
	}
	return nil
}

// bigState is the -state size from which the load's progress is logged.
const bigState = 128 << 20

// loadProgress logs a large -state load: after its first chunk, then at
// most once a second while it copies, and when it is done, with the time
// it took.
func loadProgress(path string, log *slog.Logger, began time.Time) func(copied, size int64) {
	var last time.Time
	return func(copied, size int64) {
		if size < bigState {
			return
		}
		now := time.Now()
		switch {
		case copied >= size:
			log.Info("state loaded", "path", path, "size", size, "took", now.Sub(began).Round(time.Millisecond))
		case last.IsZero() || now.Sub(last) >= time.Second:
			last = now
			log.Info("loading the state", "path", path, "copied", copied, "size", size, "percent", 100*copied/size)
		}
	}
}
