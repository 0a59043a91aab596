//go:build linux

package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sentinel errors, wrapped by the errors this package returns.
var (
	// ErrNoMemoryMap: the process has no memory map to report, because it
	// is a kernel thread or a zombie (exited, not yet reaped).
	ErrNoMemoryMap = errors.New("procfs: process has no memory map")
	// ErrFormat: the smaps_rollup text is not in the expected format.
	ErrFormat = errors.New("procfs: bad smaps_rollup format")
)

// Memory is a process's memory use from /proc/<pid>/smaps_rollup, in bytes
// (the kernel reports kB, which are KiB). Each field is the line of the same
// name without underscores; a line that the kernel does not print (the
// first kernels with smaps_rollup have no Pss_Anon, Pss_File or Pss_Shmem)
// leaves its field 0.
type Memory struct {
	Rss          uint64 // resident memory, shared pages counted in full
	Pss          uint64 // proportional share: a page shared by N processes counts 1/N
	PssShmem     uint64 // the part of Pss in shmem pages (memfd, tmpfs, SysV shm)
	PssAnon      uint64 // the part of Pss in anonymous pages (heap, stacks)
	PssFile      uint64 // the part of Pss in file pages (binary, libraries, page cache)
	SharedDirty  uint64 // resident pages mapped by others too, modified (memfd pages are here)
	SharedClean  uint64 // resident pages mapped by others too, unmodified
	PrivateDirty uint64 // resident pages mapped only here, modified
	PrivateClean uint64 // resident pages mapped only here, unmodified
}

// readBufSize bounds smaps_rollup, which is below 1 KiB on Linux 6.x.
const readBufSize = 8 << 10

// ReadSmapsRollup reads and parses /proc/<pid>/smaps_rollup. It does not
// allocate when it succeeds; it blocks only for the kernel's walk of the
// process's page tables.
//
// It returns (memory, nil), or (Memory{}, err) where err wraps
// fs.ErrNotExist when there is no such process (or the kernel has no
// smaps_rollup), fs.ErrPermission when the caller may not read it (another
// user's process without CAP_SYS_PTRACE), ErrNoMemoryMap for a kernel
// thread or a zombie, and ErrFormat for text it cannot parse. pid must be
// positive.
func ReadSmapsRollup(pid int) (Memory, error) {
	if pid <= 0 {
		return Memory{}, fmt.Errorf("procfs: smaps_rollup of pid %d: pid must be positive", pid)
	}
	var buf [readBufSize]byte
	n, err := readSmapsRollup(pid, &buf)
	if err != nil {
		return Memory{}, fmt.Errorf("procfs: read /proc/%d/smaps_rollup: %w", pid, err)
	}
	m, err := parse(buf[:n])
	if err != nil {
		return Memory{}, fmt.Errorf("procfs: /proc/%d/smaps_rollup: %w", pid, err)
	}
	return m, nil
}

// readSmapsRollup reads the file into buf with raw system calls, so that
// neither the path nor the descriptor is allocated on the heap.
func readSmapsRollup(pid int, buf *[readBufSize]byte) (int, error) {
	var path [48]byte
	p := append(path[:0], "/proc/"...)
	p = strconv.AppendInt(p, int64(pid), 10)
	p = append(p, "/smaps_rollup\x00"...)
	atFdcwd := unix.AT_FDCWD // a variable: a negative constant does not convert to uintptr
	var fd uintptr
	for {
		r, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFdcwd), uintptr(unsafe.Pointer(&p[0])),
			unix.O_RDONLY|unix.O_CLOEXEC, 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		fd = r
		break
	}
	defer unix.Close(int(fd))
	n := 0
	for n < len(buf) {
		// Not unix.Read: with -race it makes buf escape to the heap.
		m, _, errno := unix.Syscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[n])), uintptr(len(buf)-n))
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return 0, errno
		case m == 0:
			return n, nil
		}
		n += int(m)
	}
	return 0, fmt.Errorf("%w: longer than %d bytes", ErrFormat, readBufSize)
}

// ParseSmapsRollup parses smaps_rollup text read from r until io.EOF (at
// most 1 MiB). It is ReadSmapsRollup's parser, for tests and for text
// gathered elsewhere.
//
// It returns (memory, nil); or (Memory{}, err) where err wraps ErrNoMemoryMap
// for empty text, ErrFormat for text it cannot parse, or is r's read error.
func ParseSmapsRollup(r io.Reader) (Memory, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return Memory{}, fmt.Errorf("procfs: read smaps_rollup: %w", err)
	}
	m, err := parse(b)
	if err != nil {
		return Memory{}, fmt.Errorf("procfs: smaps_rollup: %w", err)
	}
	return m, nil
}

// parse reads lines "Name:   1234 kB" into a Memory. It ignores the header
// line and fields it does not know, and requires Rss and Pss.
func parse(b []byte) (Memory, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return Memory{}, ErrNoMemoryMap
	}
	var m Memory
	var haveRss, havePss bool
	for lineNo := 1; len(b) > 0; lineNo++ {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte("\n"))
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var field *uint64
		switch string(name) { // no allocation: the compiler compares in place
		case "Rss":
			field, haveRss = &m.Rss, true
		case "Pss":
			field, havePss = &m.Pss, true
		case "Pss_Shmem":
			field = &m.PssShmem
		case "Pss_Anon":
			field = &m.PssAnon
		case "Pss_File":
			field = &m.PssFile
		case "Shared_Dirty":
			field = &m.SharedDirty
		case "Shared_Clean":
			field = &m.SharedClean
		case "Private_Dirty":
			field = &m.PrivateDirty
		case "Private_Clean":
			field = &m.PrivateClean
		default:
			continue
		}
		v, ok := parseKB(rest)
		if !ok {
			return Memory{}, fmt.Errorf("%w: line %d: %q", ErrFormat, lineNo, string(line)) // a copy: b must not escape
		}
		*field = v
	}
	if !haveRss || !havePss {
		return Memory{}, fmt.Errorf("%w: no Rss or no Pss line", ErrFormat)
	}
	return m, nil
}

// parseKB parses "   1234 kB" into 1234×1024 bytes.
func parseKB(s []byte) (uint64, bool) {
	s = bytes.TrimSpace(s)
	s, ok := bytes.CutSuffix(s, []byte(" kB"))
	if !ok {
		return 0, false
	}
	s = bytes.TrimSpace(s)
	if len(s) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range s {
		if c < '0' || c > '9' || v > (math.MaxUint64-9)/10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if v > math.MaxUint64/1024 {
		return 0, false
	}
	return v * 1024, true
}
