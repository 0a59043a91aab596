// Command preforkd is a preforking supervisor: it opens the listening
// sockets once and runs N worker processes that serve from them, restarts
// them, and upgrades itself on SIGHUP without losing a connection. Without a
// COMMAND it runs the built-in demo app over a generated 100,000-key shared
// table; with one, every worker is that command (any program that speaks
// systemd socket activation and sd_notify).
//
// It is server.Main with the demo as its app: a service built on
// server.Main has the same command line.
package main

import (
	"fmt"
	"os"

	"github.com/preforkd/preforkd/internal/demo"
	"github.com/preforkd/preforkd/server"
)

// version is set at build time: go build -ldflags "-X main.version=1.2.3".
var version = "dev"

// The defaults of -demo-error-rate and -demo-crash-after, settable at
// build time (-X main.demoErrorRate=0.2): an upgrade re-runs the same
// command line, so a misbehaving build for a canary to catch is made this
// way (or by a wrapper script that adds the flag).
var (
	demoErrorRate  = "0"
	demoCrashAfter = "0s"
)

func main() {
	faults, err := demo.ParseFaults(demoErrorRate, demoCrashAfter)
	if err != nil {
		fmt.Fprintln(os.Stderr, "preforkd: built with a bad default: "+err.Error())
		os.Exit(2)
	}
	server.Main(demo.App(version, faults),
		server.WithName("preforkd"),
		server.WithVersion(version),
		server.WithState(func() ([]byte, error) { return demo.Table(demo.Keys), nil }),
		// The table is a pure function of its size and of the generator's
		// version: an upgrade to a binary with the same key takes the
		// running region over.
		server.WithStateKey(func() (string, error) { return demo.TableKey(demo.Keys), nil }),
		server.WithFlags(faults.RegisterFlags),
	)
}
