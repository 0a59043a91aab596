// Command grpc is a preforkd app serving gRPC: the standard health service
// (grpc.health.v1.Health) and server reflection, so that it needs no
// generated code of its own. Every answer carries the worker that gave it
// in its header metadata (preforkd-slot, preforkd-pid, preforkd-generation).
//
// The binary is the whole preforkd command (see -h):
//
//	go build -o /tmp/example-grpc ./examples/grpc
//	/tmp/example-grpc -workers 2 -listen grpc=tcp://127.0.0.1:50051 -pidfile /tmp/example-grpc.pid
//	grpcurl -plaintext -v 127.0.0.1:50051 grpc.health.v1.Health/Check
//	kill -HUP $(cat /tmp/example-grpc.pid)   # upgrade without a failed call
//	kill -TERM $(cat /tmp/example-grpc.pid)  # GracefulStop in every worker
package main

import (
	"context"
	"os"
	"strconv"

	"github.com/preforkd/preforkd/server"
	"github.com/preforkd/preforkd/worker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
)

func main() {
	server.Main(app, server.WithName("example-grpc"))
}

// app runs in every worker: it serves gRPC on the listener named "grpc"
// until the master asks the worker to drain (then GracefulStop lets the
// calls in flight finish).
func app(_ context.Context, w *worker.Worker) error {
	s := grpc.NewServer(grpc.UnaryInterceptor(identify(w)))
	hs := health.NewServer() // reports SERVING for the server as a whole ("")
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	return server.Serve(w, "grpc", server.GRPC(s))
}

// identify returns an interceptor that names the worker in the header of
// every unary answer.
func identify(w *worker.Worker) grpc.UnaryServerInterceptor {
	md := metadata.Pairs(
		"preforkd-slot", strconv.Itoa(w.Slot()),
		"preforkd-pid", strconv.Itoa(os.Getpid()),
		"preforkd-generation", strconv.Itoa(w.Generation()),
	)
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		if err := grpc.SetHeader(ctx, md); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}
