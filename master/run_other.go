//go:build !linux

package master

import (
	"context"
	"errors"
	"runtime"
)

// ErrNotLinux is returned by Run off Linux: preforking needs Linux's
// memfd seals, SO_PASSCRED and parent-death signals. Package server runs
// the app in-process there instead (a development mode).
var ErrNotLinux = errors.New("master: preforking needs Linux (" + runtime.GOOS + "): use server.Run or server.Main, which run the app in-process here")

// Run returns ErrNotLinux (after checking cfg, so that a bad
// configuration is reported the same way everywhere).
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.prepare(); err != nil {
		return err
	}
	return ErrNotLinux
}
