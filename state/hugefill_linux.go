//go:build linux

package state

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readError is an error of the reader a region is filled from: it fails
// the load. Any other error of a huge-page fill only means that the host
// could not give huge pages, and the fill starts again in the next mode.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// fillMapped fills f, a memfd made for mode (PagesHugeTLB or PagesTHP),
// from rd through writable shared mappings of at most chunk bytes each,
// and leaves its size at the bytes copied (hugetlb: rounded up to a whole
// huge page, as hugetlbfs requires). size is what the source announced
// (-1: unknown); the fill reads to EOF whatever it announced. It returns
// the bytes copied and, on failure, a *readError (rd failed) or the host's
// refusal (fall back).
//
// Each window is sized first (ftruncate), then mapped: for hugetlb the
// mmap reserves the window's huge pages or fails with ENOMEM, and
// MADV_POPULATE_WRITE takes them before anything is copied, so that a
// shortage is an error here and never a SIGBUS in the copy. For THP the
// window is 2 MiB-aligned and advised MADV_HUGEPAGE, so that its page
// faults allocate huge pages. Every window is unmapped before sealing
// (F_SEAL_WRITE fails with EBUSY while a writable mapping exists).
func fillMapped(f *os.File, mode string, h host, rd *bufio.Reader, size int64, copied func(int64)) (int64, error) {
	fd := int(f.Fd()) // a memfd: blocking mode is what it has anyway
	align := h.alignOf(mode)
	var off int64
	for {
		if _, err := rd.Peek(1); err == io.EOF {
			break
		} else if err != nil {
			return off, &readError{err}
		}
		w := int64(chunk)
		if size > off {
			w = min(w, roundUp(size-off, align))
		}
		if err := unix.Ftruncate(fd, off+w); err != nil {
			return off, fmt.Errorf("ftruncate %d: %w", off+w, err)
		}
		win, err := mapWindow(fd, off, w, mode, align)
		if err != nil {
			return off, err
		}
		n, err := io.ReadFull(rd, win.bytes(w))
		win.unmap()
		off += int64(n)
		if copied != nil {
			copied(off)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return off, &readError{err}
		}
	}
	end := off
	if mode == PagesHugeTLB {
		end = roundUp(off, align)
	}
	if err := unix.Ftruncate(fd, end); err != nil {
		return off, fmt.Errorf("ftruncate %d: %w", end, err)
	}
	return off, nil
}

// mapWindow maps [off, off+w) of fd read-write and shared, ready to be
// written without a fault that could fail.
func mapWindow(fd int, off, w int64, mode string, align int64) (mapped, error) {
	var m mapped
	var err error
	if mode == PagesHugeTLB {
		// hugetlbfs places the mapping on a huge page boundary itself.
		m, err = mmap(fd, off, w, unix.PROT_READ|unix.PROT_WRITE)
	} else {
		m, err = mmapAligned(fd, off, w, unix.PROT_READ|unix.PROT_WRITE, align)
	}
	if err != nil {
		return m, fmt.Errorf("mmap %d bytes at %d: %w", w, off, err)
	}
	advice, what := unix.MADV_POPULATE_WRITE, "MADV_POPULATE_WRITE"
	if mode == PagesTHP {
		advice, what = unix.MADV_HUGEPAGE, "MADV_HUGEPAGE"
	}
	if err := unix.Madvise(m.bytes(w), advice); err != nil {
		m.unmap()
		return m, fmt.Errorf("madvise %s: %w", what, err)
	}
	return m, nil
}

// mapped is a mapping made with MmapPtr (outside x/sys/unix's own
// bookkeeping of Mmap's slices).
type mapped struct {
	p   unsafe.Pointer
	len uintptr // the whole mapping, which may extend past the bytes used
}

// bytes is the mapping's first n bytes.
func (m mapped) bytes(n int64) []byte { return unsafe.Slice((*byte)(m.p), n) }

func (m mapped) unmap() error {
	if m.p == nil {
		return nil
	}
	return unix.MunmapPtr(m.p, m.len)
}

// mmap maps length bytes of fd at off, shared, wherever the kernel likes.
func mmap(fd int, off, length int64, prot int) (mapped, error) {
	p, err := unix.MmapPtr(fd, off, nil, uintptr(length), prot, unix.MAP_SHARED)
	if err != nil {
		return mapped{}, err
	}
	return mapped{p: p, len: pageRound(length)}, nil
}

// mmapAligned maps length bytes of fd at off, shared, at an address that
// is a multiple of align: the kernel maps a huge page of the file with one
// page-middle-directory entry only where the address and the file offset
// are both aligned to it, and it does not align a shmem mapping itself
// when shmem_enabled is never (where only the per-size setting allows huge
// pages, for one). It reserves length+align bytes of address space with
// nothing behind them, maps the file over the aligned part and gives the
// rest back.
func mmapAligned(fd int, off, length int64, prot int, align int64) (mapped, error) {
	l := pageRound(length)
	res, err := unix.MmapPtr(-1, 0, nil, l+uintptr(align), unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return mapped{}, err
	}
	head := (uintptr(align) - uintptr(res)%uintptr(align)) % uintptr(align)
	at := unsafe.Add(res, head)
	p, err := unix.MmapPtr(fd, off, at, uintptr(length), prot, unix.MAP_SHARED|unix.MAP_FIXED)
	if err != nil {
		unix.MunmapPtr(res, l+uintptr(align))
		return mapped{}, err
	}
	if head > 0 {
		unix.MunmapPtr(res, head)
	}
	if tail := uintptr(align) - head; tail > 0 {
		unix.MunmapPtr(unsafe.Add(p, l), tail)
	}
	return mapped{p: p, len: l}, nil
}

// pageRound rounds n up to whole base pages, as mmap does.
func pageRound(n int64) uintptr {
	ps := int64(os.Getpagesize())
	return uintptr(roundUp(n, ps))
}

// errNoHuge: a mode was asked for that the host cannot give at all.
var errNoHuge = errors.New("no huge pages of this kind on this host")
