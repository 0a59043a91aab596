// Command slowstate is a server.Main program whose shared state takes as
// long to build as the test wants: the master's state function waits until
// the file named by SLOWSTATE_GATE exists, then the state is its content.
// Workers answer every request with the state's bytes.
package main

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/preforkd/preforkd/server"
	"github.com/preforkd/preforkd/worker"
)

func main() {
	server.Main(func(ctx context.Context, w *worker.Worker) error {
		body := append([]byte(nil), w.State()...)
		return server.ServeHTTP(w, "http", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			rw.Write(body)
		}))
	}, server.WithState(func() ([]byte, error) {
		gate := os.Getenv("SLOWSTATE_GATE")
		for {
			if b, err := os.ReadFile(gate); err == nil {
				return b, nil
			}
			time.Sleep(20 * time.Millisecond)
		}
	}))
}
