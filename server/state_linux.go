//go:build linux

package server

import "github.com/preforkd/preforkd/state"

// mapState maps the shared state region read-only for the worker's life.
func mapState(fd int, size int64) ([]byte, func() error, error) {
	m, err := state.MapFd(fd, size)
	if err != nil {
		return nil, nil, err
	}
	return m.Bytes(), m.Close, nil
}
