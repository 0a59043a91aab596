// Command fastprefork is fasthttp's own preforking mode
// (github.com/valyala/fasthttp/prefork) serving the same one-line answer as
// the preforkd demo's GET /: the comparison for preforkd running a fasthttp
// worker (bench/cmd/fastworker).
//
//	fastprefork -addr 127.0.0.1:8080 -workers 2
//
// prefork starts runtime.GOMAXPROCS(0) children, so -workers sets
// GOMAXPROCS in the master; every child then sets its own GOMAXPROCS to 1
// (prefork's design). The master binds addr itself (network "tcp4", so
// 127.0.0.1 binds loopback only) and hands the socket to the children as
// fd 3: one shared accept queue, as with preforkd. The master does not
// forward SIGTERM to its children; they exit within 500 ms of the master's
// death (OnMasterDeath), and the bench SIGKILLs the whole tree by pid anyway.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/prefork"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fastprefork:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8080", "host:port to serve on")
	workers := flag.Int("workers", runtime.NumCPU(), "child processes")
	flag.Parse()
	if !prefork.IsChild() {
		runtime.GOMAXPROCS(*workers)
	}
	line := fmt.Sprintf("preforkd demo worker=0 pid=%d generation=1 version=v1\n", os.Getpid())
	srv := &fasthttp.Server{
		Handler: func(c *fasthttp.RequestCtx) {
			c.SetContentType("text/plain; charset=utf-8")
			c.WriteString(line)
		},
		NoDefaultServerHeader: true,
	}
	p := prefork.New(srv)
	p.OnMasterDeath = func() { os.Exit(0) }
	return p.ListenAndServe(*addr)
}
