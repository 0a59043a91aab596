// Package server is the one entry point a Go program needs. Main gives the
// program the whole preforkd command line with its app as the worker:
//
//	func main() {
//		mux := http.NewServeMux()
//		mux.HandleFunc("GET /{$}", hello)
//		server.Main(func(ctx context.Context, w *worker.Worker) error {
//			return server.ServeHTTP(w, "http", mux)
//		})
//	}
//
// The binary then takes -workers, -listen NAME=URL, -metrics, -control,
// -grace, … (every flag of the preforkd supervisor), `ctl status|reload|…`
// and `state build`. When a user starts it, it is the master; the master
// starts the workers as the same binary with the same arguments, and in
// them Main runs the app. Programs that configure in code use Run with a
// Config instead.
//
// Serving: ServeHTTP (HTTP with a drain that loses no request), Serve (any
// server with Serve(net.Listener) and Shutdown(ctx), such as *http.Server),
// GRPC (a *grpc.Server for Serve), TCP (a handler per connection). Each
// tells the master the worker is ready once it serves, and drains within
// the master's grace period when the worker's context ends.
//
// HTTP drains without losing a request: the listener is closed, requests
// already read are finished, the next request on each keep-alive
// connection is answered with "Connection: close", and a connection is
// closed for being idle only after IdleClose (so that a client sending on
// it at that moment is not cut off). TCP drains by cancelling the handlers'
// context and setting every connection's read deadline to now.
//
// Off Linux, Run and Main run the app in-process as a single worker on the
// same listeners (RunInProcess): a development mode, so that the same main
// runs on a laptop.
package server
