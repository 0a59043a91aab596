//go:build linux

package state

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Seals is the set of seals that FromBytes, FromFile and FromReader put on a
// region and that MapFd requires: no write, no shrink, no grow, no change of
// the seals.
const Seals = unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// memfdNameMax is the longest name memfd_create accepts (MFD_NAME_MAX_LEN).
const memfdNameMax = 249

// Region is the master's side of the shared state: a sealed memfd that
// nobody can modify any more. Hand File to workers; Close it when no new
// worker will need it (workers that already inherited the descriptor or
// mapped the region keep their own reference).
//
// Its methods are safe for concurrent use.
type Region struct {
	f    *os.File
	size int64

	closeOnce sync.Once
	closeErr  error
}

// FromBytes returns a sealed region that holds a copy of data. name is shown
// in /proc/<pid>/maps as "/memfd:<name>"; it is cut to 249 bytes and must
// not contain a NUL byte. An empty data gives a valid empty region.
//
// It returns (region, nil) or (nil, err); data is not retained.
func FromBytes(name string, data []byte) (*Region, error) {
	return FromReader(name, bytes.NewReader(data))
}

// FromFile returns a sealed region that holds a copy of the file at path,
// read to its end. io.Copy tries copy_file_range, which the kernel refuses
// (EXDEV) between different file system types, then reads and writes:
// loading 1 GiB from ext4 took 1 to 1.7 s on a VM, as long as cp to
// /dev/shm, most of it spent allocating the memfd's pages.
// The region is named after the file's base name. Errors name the path, as
// in `state "/x/y": open /x/y: permission denied`.
//
// Only a regular file is accepted: it is opened without blocking and
// checked on the open descriptor (a FIFO or a device is refused at once
// instead of hanging or reading forever), and one larger than the memory
// available now (MemAvailable) is refused with both sizes, before anything
// is copied.
//
// It returns (region, nil) or (nil, err).
func FromFile(path string) (*Region, error) { return FromFileProgress(path, nil) }

// FromFileProgress is FromFile that calls progress, when not nil, after
// every 64 MiB copied and at the end, with the bytes copied so far and the
// file's size, from the calling goroutine (a master logs a large load's
// progress with it).
func FromFileProgress(path string, progress func(copied, size int64)) (*Region, error) {
	src, err := openRegular(path)
	if err != nil {
		return nil, fmt.Errorf("state %q: %w", path, err)
	}
	defer src.Close()
	var size int64
	if fi, err := src.Stat(); err == nil {
		size = fi.Size()
	}
	r, err := fill(filepath.Base(path), src, func(n int64) {
		if progress != nil {
			progress(n, size)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("state %q: %w", path, err)
	}
	return r, nil
}

// FromReader returns a sealed region that holds everything read from rd
// until io.EOF. It blocks until rd is exhausted. A read error discards the
// partial region. name is used as in FromBytes.
//
// It returns (region, nil) or (nil, err).
func FromReader(name string, rd io.Reader) (*Region, error) {
	r, err := fill(name, rd, nil)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return r, nil
}

// chunk is how much fill copies between two progress calls.
const chunk = 64 << 20

// fill creates, fills and seals a memfd, calling copied (when not nil)
// with the running total after each chunk; its errors carry no prefix.
func fill(name string, rd io.Reader, copied func(int64)) (*Region, error) {
	if len(name) > memfdNameMax {
		name = name[:memfdNameMax]
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create %q: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	// Fill through write(2), never through a writable mapping: F_SEAL_WRITE
	// fails with EBUSY while a writable shared mapping exists.
	// Chunks through io.CopyN: os.File.ReadFrom still takes the
	// copy_file_range path for the *io.LimitedReader it makes.
	var total int64
	for {
		n, err := io.CopyN(f, rd, chunk)
		total += n
		if copied != nil {
			copied(total)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("fill memfd: %w", err)
		}
	}
	size, err := sealFile(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Region{f: f, size: size}, nil
}

// sealFile rewinds f, adds Seals and returns the sealed size.
func sealFile(f *os.File) (int64, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("seal memfd: %w", err)
	}
	var size int64
	var opErr error
	err = rc.Control(func(fd uintptr) {
		if _, opErr = unix.FcntlInt(fd, unix.F_ADD_SEALS, Seals); opErr != nil {
			opErr = fmt.Errorf("seal memfd: %w", opErr)
			return
		}
		var st unix.Stat_t
		if opErr = unix.Fstat(int(fd), &st); opErr != nil {
			opErr = fmt.Errorf("fstat memfd: %w", opErr)
			return
		}
		size = st.Size
		// Leave the offset at 0 for anyone who reads the file; sealing
		// forbids writes, not seeks.
		if _, opErr = unix.Seek(int(fd), 0, io.SeekStart); opErr != nil {
			opErr = fmt.Errorf("rewind memfd: %w", opErr)
		}
	})
	if err == nil {
		err = opErr
	}
	return size, err
}

// File returns the sealed memfd, close-on-exec. The Region keeps owning it:
// do not close it, and do not use it after Close. Pass it to a worker in
// os/exec Cmd.ExtraFiles (the child's copy loses close-on-exec). The file
// offset is shared with every process that inherits it: read the region
// through MapFd or with pread, not with read.
func (r *Region) File() *os.File { return r.f }

// Size returns the region's size in bytes, which can no longer change.
func (r *Region) Size() int64 { return r.size }

// Map maps the region read-only into this process, as a worker would with
// MapFd. The mapping stays valid after r is closed; Close it separately.
//
// It returns (mapping, nil) or (nil, err).
func (r *Region) Map() (*Mapping, error) {
	var m *Mapping
	var opErr error
	rc, err := r.f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("state: map region: %w", err)
	}
	if err := rc.Control(func(fd uintptr) { m, opErr = MapFd(int(fd), r.size) }); err != nil {
		return nil, fmt.Errorf("state: map region: %w", err)
	}
	return m, opErr
}

// Checksum returns Checksum of the region's whole content. It maps the
// region for the duration of the call and reads every byte (about 0.35 s
// for 1 GiB, half of it page faults).
//
// It returns (sum, nil) or (0, err) when the region cannot be mapped.
func (r *Region) Checksum() (uint64, error) {
	m, err := r.Map()
	if err != nil {
		return 0, err
	}
	sum := Checksum(m.Bytes())
	return sum, m.Close()
}

// Close closes the master's descriptor of the region. The memory is freed
// once every worker that inherited or mapped it has closed or unmapped it
// too. Close is idempotent: later calls return the first call's result.
func (r *Region) Close() error {
	r.closeOnce.Do(func() {
		if err := r.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			r.closeErr = fmt.Errorf("state: close region: %w", err)
		}
	})
	return r.closeErr
}
