// Command noready is an app that serves without ever telling the master
// it is ready (plain http.Serve): the master's start timeout names the fix.
package main

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/preforkd/preforkd/listener"
	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/server"
	"github.com/preforkd/preforkd/worker"
)

func main() {
	cfg := server.Config{Master: master.Config{Workers: 1, Control: "off", StartTimeout: 300 * time.Millisecond,
		Listen: []listener.Spec{{Name: "http", Network: "tcp", Address: os.Getenv("EXAMPLE_ADDR")}}}}
	err := server.Run(context.Background(), cfg, func(ctx context.Context, w *worker.Worker) error {
		ln, err := w.Listener("http")
		if err != nil {
			return err
		}
		go http.Serve(ln, http.NotFoundHandler())
		<-ctx.Done()
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
