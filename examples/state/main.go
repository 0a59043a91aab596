// Command state is a preforkd app whose workers answer from the shared
// read-only state table. The master builds the table once (the function
// given to server.WithState) and hands every worker the same sealed memory,
// mapped read-only: N workers cost one copy of the data.
//
// The table here maps "status/<code>" to the HTTP reason phrase of every
// status code net/http knows, and "example/greeting" to a greeting.
//
// The binary is the whole preforkd command (see -h):
//
//	go build -o /tmp/example-state ./examples/state
//	/tmp/example-state -workers 2 -listen http=tcp://127.0.0.1:8080
//	curl 127.0.0.1:8080/                  # 63 keys
//	curl 127.0.0.1:8080/kv/status/418     # I'm a teapot
//	/tmp/example-state ctl status         # memory: PSS of the shared table is split between workers
package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/preforkd/preforkd/server"
	"github.com/preforkd/preforkd/state/table"
	"github.com/preforkd/preforkd/worker"
)

func main() {
	server.Main(app, server.WithName("example-state"), server.WithState(build))
}

// build runs in the master: it returns the table every worker reads.
func build() ([]byte, error) {
	pairs := []table.KV{{Key: []byte("example/greeting"), Value: []byte("hello from the shared table")}}
	for code := 100; code < 600; code++ {
		if text := http.StatusText(code); text != "" {
			pairs = append(pairs, table.KV{Key: []byte("status/" + strconv.Itoa(code)), Value: []byte(text)})
		}
	}
	return table.Build(pairs)
}

// app runs in every worker: it opens the shared table (no copy is made) and
// serves lookups on the listener named "http".
func app(_ context.Context, w *worker.Worker) error {
	t, err := table.Open(w.State())
	if err != nil {
		return fmt.Errorf("open the shared table: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(rw, "%d keys\n", t.Len())
	})
	mux.HandleFunc("GET /kv/{key...}", func(rw http.ResponseWriter, req *http.Request) {
		v, ok := t.GetString(req.PathValue("key"))
		if !ok {
			http.NotFound(rw, req)
			return
		}
		fmt.Fprintf(rw, "%s\n", v)
	})
	return server.ServeHTTP(w, "http", mux)
}
