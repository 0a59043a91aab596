package master

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/preforkd/preforkd/internal/contract"
)

// ErrInWorker is returned by Run in a process that a master started as a
// worker. Workers are the same executable run again with the same
// arguments, so a main that calls Run unconditionally would make every
// worker a master of its own (a fork bomb).
var ErrInWorker = errors.New("master.Run called inside a worker: workers run main again with the same arguments; " +
	"use server.Run or server.Main, which run the app in a worker and the master otherwise " +
	"(or set Config.Command to run another program as the workers)")

func checkNotWorker() error {
	if os.Getenv(contract.Worker) != "" || os.Getenv(contract.ExecShim) != "" {
		return ErrInWorker
	}
	return nil
}

// prepare fills in defaults and checks what Run is given, the same on
// every platform.
func (c *Config) prepare() error {
	c.setDefaults()
	if err := c.validate(); err != nil {
		return err
	}
	if err := checkNotWorker(); err != nil {
		return err
	}
	if c.Control == "" {
		path, err := DefaultControlPath(filepath.Base(os.Args[0]))
		if err != nil {
			return err
		}
		c.Control = path
	}
	return nil
}

// checkPIDFile makes sure the pid file can be written (tableflip writes it
// only when the master is ready): a first start fails at once instead of
// serving without one, and a new master at an upgrade fails at once
// instead of at the upgrade timeout.
func checkPIDFile(path string) error {
	if path == "" {
		return nil
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("-pidfile %s: cannot be written (it is not a regular file): choose a path in a writable directory", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".preforkd-pidfile-check-*")
	if err != nil {
		return fmt.Errorf("-pidfile %s: cannot be written (%w): choose a path in a writable directory", path, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
