//go:build !linux

package state

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// Region holds the state off Linux, where there are no sealed memfds: an
// unlinked temporary file, for the development mode that runs the app
// in-process (nothing is shared, nothing is sealed).
type Region struct {
	f    *os.File
	size int64
}

// FromBytes copies data into a new Region.
func FromBytes(name string, data []byte) (*Region, error) {
	return FromReader(name, bytes.NewReader(data))
}

// FromFile copies the file at path into a new Region.
func FromFile(path string) (*Region, error) { return FromFileProgress(path, nil) }

// FromFileProgress is FromFile; progress, when not nil, is called once at
// the end with the bytes copied and the file's size.
func FromFileProgress(path string, progress func(copied, size int64)) (*Region, error) {
	r, err := fromFile(path)
	if err == nil && progress != nil {
		progress(r.Size(), r.Size())
	}
	return r, err
}

func fromFile(path string) (*Region, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	defer f.Close()
	return FromReader(path, f)
}

// FromReader copies rd into a new Region.
func FromReader(name string, rd io.Reader) (*Region, error) {
	f, err := os.CreateTemp("", "preforkd-state-*")
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", name, err)
	}
	os.Remove(f.Name())
	n, err := io.Copy(f, rd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("state %s: %w", name, err)
	}
	return &Region{f: f, size: n}, nil
}

// File is the region's file.
func (r *Region) File() *os.File { return r.f }

// Size is the region's size in bytes.
func (r *Region) Size() int64 { return r.size }

// Close releases the region.
func (r *Region) Close() error { return r.f.Close() }

// PageMode is Pages4K: off Linux the region is an ordinary file.
func (r *Region) PageMode() string { return Pages4K }
