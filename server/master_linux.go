//go:build linux

package server

import (
	"context"

	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/worker"
)

// runMaster runs the master (the workers run app).
func runMaster(ctx context.Context, cfg master.Config, _ worker.Options, _ App) error {
	return master.Run(ctx, cfg)
}
