//go:build linux

package state

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNotSealed: the descriptor given to MapFd is not a memfd that carries
// every seal in Seals.
var ErrNotSealed = errors.New("state: region is not sealed")

// Mapping is a worker's read-only view of a sealed region. Bytes points
// straight at the shared pages: nothing is copied.
//
// A write through Bytes faults (SIGSEGV, SEGV_ACCERR), which the Go runtime
// turns into "unexpected fault address", "fatal error: fault" and exit
// status 2: it cannot be recovered (unless the goroutine set
// debug.SetPanicOnFault). The kernel refuses every attempt to make the
// mapping or the region writable (mprotect: EACCES; writable mmap,
// ftruncate, fallocate: EPERM; write: EPERM, or EINVAL on a hugetlb
// region, which has no write(2) at all).
type Mapping struct {
	b []byte // nil for an empty region; otherwise the region's bytes
	m mapped // the whole mapping (a hugetlb region's extends past b)

	closeOnce sync.Once
	closeErr  error
}

// MapFd maps the sealed memfd fd read-only (PROT_READ, MAP_SHARED) after
// checking that it carries every seal in Seals and holds exactly size bytes
// (a hugetlb memfd: size rounded up to its huge page size, as
// Region.PageMode PagesHugeTLB builds it). The seals are checked first, so
// the size cannot change after it is checked. An fd that is not a memfd,
// or a memfd that is not fully sealed, is refused with an error that wraps
// ErrNotSealed; a size mismatch is refused too. A size of 0 gives a
// Mapping whose Bytes is empty (an empty mmap is impossible).
//
// Huge pages: a hugetlb memfd is mapped in its huge pages. Any other
// region of 2 MiB or more is mapped at an address aligned to the
// transparent huge page size and advised MADV_HUGEPAGE, so that where the
// region's pages are huge (PagesTHP) each is mapped with one page-table
// entry; where they are not, that changes nothing.
//
// MapFd neither closes fd, nor keeps it, nor changes its flags: the caller
// may close it as soon as MapFd returns (or must at least set close-on-exec
// again on a descriptor inherited through ExtraFiles), and the mapping
// stays valid until Close. MapFd does not block.
//
// It returns (mapping, nil) or (nil, err).
func MapFd(fd int, size int64) (*Mapping, error) {
	if size < 0 {
		return nil, fmt.Errorf("state: map fd %d: negative size %d", fd, size)
	}
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if errors.Is(err, unix.EINVAL) {
		// F_GET_SEALS on a file that does not support sealing.
		return nil, fmt.Errorf("state: map fd %d: %w: not a memfd", fd, ErrNotSealed)
	}
	if err != nil {
		return nil, fmt.Errorf("state: map fd %d: get seals: %w", fd, err)
	}
	if missing := Seals &^ seals; missing != 0 {
		return nil, fmt.Errorf("state: map fd %d: %w: missing %s", fd, ErrNotSealed, sealNames(missing))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("state: map fd %d: fstat: %w", fd, err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return nil, fmt.Errorf("state: map fd %d: fstatfs: %w", fd, err)
	}
	hugetlb := fs.Type == unix.HUGETLBFS_MAGIC
	if hugetlb {
		// The file is the state rounded up to whole huge pages (st_blksize).
		if want := roundUp(size, int64(st.Blksize)); st.Size != want {
			return nil, fmt.Errorf("state: map fd %d: hugetlb region holds %d bytes, expected %d (%d rounded up to %d-byte pages)",
				fd, st.Size, want, size, st.Blksize)
		}
	} else if st.Size != size {
		return nil, fmt.Errorf("state: map fd %d: region holds %d bytes, expected %d", fd, st.Size, size)
	}
	if size == 0 {
		return &Mapping{}, nil
	}
	if st.Size > math.MaxInt {
		return nil, fmt.Errorf("state: map fd %d: %d bytes do not fit in the address space", fd, st.Size)
	}
	var m mapped
	switch pmd := pmdSize(); {
	case hugetlb:
		m, err = mmap(fd, 0, st.Size, unix.PROT_READ)
	case size >= pmd:
		if m, err = mmapAligned(fd, 0, size, unix.PROT_READ, pmd); err == nil {
			// Refused only where the kernel has no THP at all: then there
			// is nothing to gain either.
			_ = unix.Madvise(m.bytes(size), unix.MADV_HUGEPAGE)
		}
	default:
		m, err = mmap(fd, 0, size, unix.PROT_READ)
	}
	if err != nil {
		return nil, fmt.Errorf("state: map fd %d: mmap %d bytes: %w", fd, st.Size, err)
	}
	b := m.bytes(size)
	return &Mapping{b: b[:size:size], m: m}, nil
}

// Map is MapFd for an *os.File. It does not call f.Fd (which would put the
// descriptor into blocking mode), and f may be closed once Map returns.
//
// It returns (mapping, nil) or (nil, err).
func Map(f *os.File, size int64) (*Mapping, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("state: map %s: %w", f.Name(), err)
	}
	var m *Mapping
	var mapErr error
	if err := rc.Control(func(fd uintptr) { m, mapErr = MapFd(int(fd), size) }); err != nil {
		return nil, fmt.Errorf("state: map %s: %w", f.Name(), err)
	}
	return m, mapErr
}

// Bytes returns the mapped region: read-only, len and cap equal to the
// region's size, nil for an empty region or after Close. Writing to it
// kills the process (see Mapping). The slice, and every slice or string
// taken from it, is valid only until Close.
func (m *Mapping) Bytes() []byte { return m.b }

// Close unmaps the region. Afterwards any read of a slice obtained from
// Bytes (or from a Table over it) faults and kills the process, so call it
// only when nothing reads the mapping any more, and never concurrently with
// a reader. Close is idempotent: later calls return the first call's result.
func (m *Mapping) Close() error {
	m.closeOnce.Do(func() {
		if m.b == nil {
			return
		}
		if err := m.m.unmap(); err != nil {
			m.closeErr = fmt.Errorf("state: munmap: %w", err)
		}
		m.b = nil
	})
	return m.closeErr
}

// sealNames renders a set of F_SEAL_* bits for error messages.
func sealNames(seals int) string {
	var names []string
	for _, s := range []struct {
		bit  int
		name string
	}{
		{unix.F_SEAL_SEAL, "F_SEAL_SEAL"},
		{unix.F_SEAL_SHRINK, "F_SEAL_SHRINK"},
		{unix.F_SEAL_GROW, "F_SEAL_GROW"},
		{unix.F_SEAL_WRITE, "F_SEAL_WRITE"},
	} {
		if seals&s.bit != 0 {
			names = append(names, s.name)
		}
	}
	return strings.Join(names, "|")
}
