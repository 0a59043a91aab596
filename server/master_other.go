//go:build !linux

package server

import (
	"context"

	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/worker"
)

// runMaster runs app in-process: preforking needs Linux.
func runMaster(ctx context.Context, cfg master.Config, opts worker.Options, app App) error {
	return RunInProcess(ctx, cfg, opts, app)
}
