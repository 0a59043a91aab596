// Command tcp is a preforkd app speaking a line protocol over TCP. Each
// line is a command and gets one line back:
//
//	ECHO text    → text
//	UPPER text   → TEXT
//	WHO          → worker 0 pid 4242 generation 1
//	QUIT         → bye (and the connection closes)
//
// Anything else gets "ERR unknown command". When the worker drains, each
// connection finishes the line it is answering and is closed.
//
// The binary is the whole preforkd command (see -h); the listener must be
// named "tcp":
//
//	go build -o /tmp/example-tcp ./examples/tcp
//	/tmp/example-tcp -workers 2 -listen tcp=tcp://127.0.0.1:7000
//	printf 'UPPER hello\nWHO\nQUIT\n' | nc 127.0.0.1 7000
package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/preforkd/preforkd/server"
	"github.com/preforkd/preforkd/worker"
)

// maxLine bounds a command line; a longer one ends the connection.
const maxLine = 64 << 10

func main() {
	server.Main(app, server.WithName("example-tcp"))
}

// app runs in every worker: it serves the protocol on the listener named
// "tcp" until the master asks the worker to drain.
func app(_ context.Context, w *worker.Worker) error {
	who := fmt.Sprintf("worker %d pid %d generation %d", w.Slot(), os.Getpid(), w.Generation())
	t := &server.TCP{Handler: func(ctx context.Context, c net.Conn) { serveConn(ctx, c, who) }}
	return t.Run(w, "tcp")
}

// serveConn answers c's lines until the client quits or goes, or ctx ends
// (the drain began: a blocked read is woken by an expired deadline).
func serveConn(ctx context.Context, c net.Conn, who string) {
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	out := bufio.NewWriter(c)
	for sc.Scan() {
		reply, quit := answer(sc.Text(), who)
		fmt.Fprintln(out, reply)
		if out.Flush() != nil || quit || ctx.Err() != nil {
			return
		}
	}
}

// answer returns the reply to one command line, and whether the client
// asked to quit.
func answer(line, who string) (reply string, quit bool) {
	cmd, arg, _ := strings.Cut(strings.TrimRight(line, "\r"), " ")
	switch strings.ToUpper(cmd) {
	case "ECHO":
		return arg, false
	case "UPPER":
		return strings.ToUpper(arg), false
	case "WHO":
		return who, false
	case "QUIT":
		return "bye", true
	}
	return "ERR unknown command", false
}
