// Package examples holds runnable preforkd apps, one per directory, each a
// main package whose main is one call to server.Main, which gives the
// binary the whole preforkd command line (-workers, -listen, -metrics,
// ctl, …):
//
//   - http: net/http with a chi router; answers name the worker.
//   - grpc: a gRPC server (health service and reflection).
//   - tcp: a line protocol over plain TCP (server.TCP).
//   - state: workers answering from the shared read-only table.
//   - metrics: a worker's own Prometheus metrics in the master's /metrics.
//
// It is a module of its own, so that its dependencies (chi, gRPC) never
// enter preforkd's. The tests here build every example and run them as
// users do: go test ./examples/... from the repository root.
package examples
