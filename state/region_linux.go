//go:build linux

package state

import (
	"bufio"
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
	f     *os.File
	size  int64  // the state's bytes; a hugetlb memfd is longer
	pages string // PagesHugeTLB, PagesTHP or Pages4K

	closeOnce sync.Once
	closeErr  error
}

// FromBytes returns a sealed region that holds a copy of data. name is shown
// in /proc/<pid>/maps as "/memfd:<name>"; it is cut to 249 bytes and must
// not contain a NUL byte. An empty data gives a valid empty region. The
// region is in huge pages where the host allows (see Region.PageMode).
//
// It returns (region, nil) or (nil, err); data is not retained.
func FromBytes(name string, data []byte) (*Region, error) {
	r, err := fill(name, bytes.NewReader(data), int64(len(data)), nil, "")
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return r, nil
}

// FromFile returns a sealed region that holds a copy of the file at path,
// read to its end, in huge pages where the host allows (see
// Region.PageMode). In 4 KiB pages it is copied with write(2) (io.Copy
// tries copy_file_range first, which the kernel refuses with EXDEV between
// different file system types); in huge pages it is read straight into a
// mapping of the memfd. Most of a large load is the kernel allocating and
// clearing the memfd's pages.
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
	size := int64(-1)
	if fi, err := src.Stat(); err == nil {
		size = fi.Size()
	}
	r, err := fill(filepath.Base(path), src, size, func(n int64) {
		if progress != nil {
			progress(n, max(size, 0))
		}
	}, "")
	if err != nil {
		return nil, fmt.Errorf("state %q: %w", path, err)
	}
	return r, nil
}

// FromReader returns a sealed region that holds everything read from rd
// until io.EOF, in huge pages where the host allows (see Region.PageMode).
// It blocks until rd is exhausted. A read error discards the partial
// region. name is used as in FromBytes.
//
// It returns (region, nil) or (nil, err).
func FromReader(name string, rd io.Reader) (*Region, error) {
	r, err := fill(name, rd, -1, nil, "")
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return r, nil
}

// chunk is how much fill copies between two progress calls.
const chunk = 64 << 20

// fill creates, fills and seals a memfd from rd, whose size is size (-1:
// unknown; the fill reads to EOF whatever it is), calling copied (when not
// nil) with the running total after each chunk; its errors carry no
// prefix. mode is the page mode to try first; "" lets the host decide
// (host.choose). A huge-page mode that fails for want of pages falls back
// to the next (hugetlb, then THP, then 4 KiB): the bytes already read are
// copied from the abandoned memfd into the next one, and copied is not
// called again for them. Only an error of rd, or of the 4 KiB fill, fails
// the load.
func fill(name string, rd io.Reader, size int64, copied func(int64), mode string) (*Region, error) {
	if len(name) > memfdNameMax {
		name = name[:memfdNameMax]
	}
	h := readHost()
	br := bufio.NewReaderSize(rd, 64<<10)
	if mode == "" {
		if size < 0 {
			// A source of unknown size: see whether it is small at all.
			br = bufio.NewReaderSize(rd, smallRegion)
			if b, err := br.Peek(smallRegion); len(b) < smallRegion {
				if err != io.EOF {
					return nil, fmt.Errorf("fill memfd: %w", err)
				}
				size = int64(len(b))
			}
		}
		mode = h.choose(size)
	}
	var abandoned []*os.File // closed once the region is built (they hold the bytes replayed)
	defer func() {
		for _, f := range abandoned {
			f.Close()
		}
	}()
	var replayed int64 // bytes that copied was already told about
	report := func(n int64) {
		if copied != nil && n > replayed {
			copied(n)
		}
	}
	for {
		f, n, err := fillMode(name, mode, h, br, size, report)
		if err == nil {
			return &Region{f: f, size: n, pages: mode}, nil
		}
		var re *readError
		if mode == Pages4K || errors.As(err, &re) {
			if f != nil {
				f.Close()
			}
			return nil, err
		}
		// The host has no huge pages for this one: go on in the next mode,
		// starting again with what the abandoned memfd holds.
		next := h.next(mode)
		if f != nil {
			abandoned = append(abandoned, f)
			replayed = max(replayed, n)
			br = bufio.NewReaderSize(io.MultiReader(io.NewSectionReader(f, 0, n), br), 64<<10)
		}
		mode = next
	}
}

// fillMode makes a memfd for mode and fills and seals it. On failure it
// returns the memfd (nil if none was made) with the n bytes it holds.
func fillMode(name, mode string, h host, br *bufio.Reader, size int64, copied func(int64)) (*os.File, int64, error) {
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	if mode == PagesHugeTLB {
		if h.hugetlbSize <= 0 {
			return nil, 0, fmt.Errorf("memfd_create %q, %s: %w", name, mode, errNoHuge)
		}
		flags |= unix.MFD_HUGETLB
	}
	fd, err := unix.MemfdCreate(name, flags)
	if err != nil {
		return nil, 0, fmt.Errorf("memfd_create %q: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	var n int64
	if mode == Pages4K {
		n, err = fillWrite(f, br, copied)
	} else {
		n, err = fillMapped(f, mode, h, br, size, copied)
	}
	if err != nil {
		return f, n, err
	}
	fsize, err := sealFile(f)
	if err != nil {
		return f, n, err
	}
	want := n
	if mode == PagesHugeTLB {
		want = roundUp(n, h.hugetlbSize)
	}
	if fsize != want {
		return f, n, fmt.Errorf("memfd holds %d bytes after copying %d", fsize, n)
	}
	return f, n, nil
}

// fillWrite fills f through write(2), never through a writable mapping:
// F_SEAL_WRITE fails with EBUSY while a writable shared mapping exists.
// Chunks through io.CopyN: os.File.ReadFrom still takes the
// copy_file_range path for the *io.LimitedReader it makes.
func fillWrite(f *os.File, rd io.Reader, copied func(int64)) (int64, error) {
	var total int64
	for {
		n, err := io.CopyN(f, rd, chunk)
		total += n
		if copied != nil {
			copied(total)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("fill memfd: %w", err)
		}
	}
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
// through MapFd or with pread, not with read. A hugetlb region's file
// (PageMode PagesHugeTLB) is Size rounded up to a whole huge page, the
// rest zeros: Size, not the file's size, is the state.
func (r *Region) File() *os.File { return r.f }

// Size returns the region's size in bytes, which can no longer change:
// exactly the bytes it was built from, whatever the page mode. A worker
// maps exactly Size bytes (MapFd), never the rounding of a hugetlb memfd.
func (r *Region) Size() int64 { return r.size }

// PageMode tells what pages hold the region: PagesHugeTLB, PagesTHP or
// Pages4K. A region is built in the first of these that the host allows
// when it is built (its size at least 2 MiB):
//
//   - PagesHugeTLB when enough hugetlb pages are reserved and free
//     (/proc/sys/vm/nr_hugepages; /proc/meminfo HugePages_Free less
//     HugePages_Rsvd) for the whole region;
//   - PagesTHP when /sys/kernel/mm/transparent_hugepage/shmem_enabled is
//     advise, within_size, always or force;
//   - Pages4K otherwise.
//
// A mode whose pages run out while the region is filled falls back to the
// next one (never an error). Workers' mappings follow the mode: MapFd maps
// a hugetlb region in huge pages, and any other region of 2 MiB or more on
// a huge-page boundary, advised MADV_HUGEPAGE.
func (r *Region) PageMode() string { return r.pages }

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
