// Package server is the one entry point a Go program needs: Run starts the
// master when the process is started by a user, and runs the app when the
// master started it as a worker.
//
//	func main() {
//		cfg := server.Config{Master: master.Config{Workers: 4, MetricsAddr: "127.0.0.1:9100"}}
//		err := server.Run(context.Background(), cfg, func(ctx context.Context, w *worker.Worker) error {
//			return server.ServeHTTP(w, "http", handler)
//		})
//		if err != nil { log.Fatal(err) }
//	}
//
// HTTP drains without losing a request: the listener is closed, requests
// already read are finished, the next request on each keep-alive
// connection is answered with "Connection: close", and a connection is
// closed for being idle only after IdleClose (so that a client sending on
// it at that moment is not cut off). TCP drains by cancelling the handlers'
// context and waiting for them.
package server
