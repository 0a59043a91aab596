// Command http is a preforkd app: net/http with a chi router. Every answer
// names the worker that gave it (slot, pid and master generation), so that
// an upgrade can be watched from a client.
//
// The binary is the whole preforkd command (see -h):
//
//	go build -ldflags "-X main.version=1.0.0" -o /tmp/example-http ./examples/http
//	/tmp/example-http -version
//	/tmp/example-http -workers 2 -listen http=tcp://127.0.0.1:8080 -pidfile /tmp/example-http.pid
//	curl 127.0.0.1:8080/            # {"slot":0,"pid":4242,"generation":1}
//	curl 127.0.0.1:8080/hello/ann   # hello, ann (worker 1, pid 4243, generation 1)
//	kill -HUP $(cat /tmp/example-http.pid)   # upgrade: answers now say generation 2
//	/tmp/example-http ctl status
//	kill -TERM $(cat /tmp/example-http.pid)  # drain and stop
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"

	"github.com/go-chi/chi/v5"
	"github.com/preforkd/preforkd/server"
	"github.com/preforkd/preforkd/worker"
)

// version is set at build time: go build -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	server.Main(app, server.WithName("example-http"), server.WithVersion(version))
}

// app runs in every worker: it serves the router on the listener named
// "http" until the master asks the worker to drain.
func app(_ context.Context, w *worker.Worker) error {
	return server.ServeHTTP(w, "http", routes(identify(w)))
}

// identity names the worker in answers.
type identity struct {
	Slot       int `json:"slot"`
	PID        int `json:"pid"`
	Generation int `json:"generation"`
}

func identify(w *worker.Worker) identity {
	return identity{Slot: w.Slot(), PID: os.Getpid(), Generation: w.Generation()}
}

func routes(id identity) http.Handler {
	r := chi.NewRouter()
	r.Get("/", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		json.NewEncoder(rw).Encode(id)
	})
	r.Get("/hello/{name}", func(rw http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(rw, "hello, %s (worker %d, pid %d, generation %d)\n",
			chi.URLParam(req, "name"), id.Slot, id.PID, id.Generation)
	})
	return r
}
