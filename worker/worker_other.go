//go:build !linux

package worker

// New returns ErrNotWorker: off Linux there are no preforked workers
// (package server runs the app in-process, see NewLocal).
func New(opts Options) (*Worker, error) { return nil, ErrNotWorker }
