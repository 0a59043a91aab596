//go:build linux

package balance

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Entries is how many workers the board can count at once: twice the
// master's worker limit, for the overlap of a replacement and the worker
// it replaces.
const Entries = 2048

// One cache line per entry, so that workers counting do not share lines.
const entrySize = 64

// entry is one worker's counters, at the start of its cache line.
type entry struct {
	pid      atomic.Int64 // the owner; 0: free
	active   atomic.Int64 // 1 while it accepts
	open     atomic.Int64 // connections open now
	accepted atomic.Int64 // connections accepted (started at the others' average)
	last     atomic.Int64 // CLOCK_MONOTONIC ns of its last accept
}

// header is the board's first cache line.
type header struct {
	high atomic.Int64 // entries in use are below this
	mode atomic.Int64 // a Mode, set by Create
}

// Board is the counters shared by the workers of one master.
type Board struct {
	mem  []byte
	file *os.File // the master's memfd; nil in a worker
}

const size = entrySize * (Entries + 1)

// Create makes a board in a new memfd and maps it (the master). The mode
// is written on the board, so that every worker follows it.
func Create(mode Mode) (*Board, error) {
	fd, err := unix.MemfdCreate("preforkd-balance", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("balance: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:preforkd-balance")
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("balance: %w", err)
	}
	b, err := mapFd(fd)
	if err != nil {
		f.Close()
		return nil, err
	}
	b.file = f
	b.header().mode.Store(int64(mode))
	return b, nil
}

// Map maps the board the master handed over as fd (a worker). The
// descriptor may be closed afterwards.
func Map(fd int) (*Board, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("balance: fstat: %w", err)
	}
	if st.Size != size {
		return nil, fmt.Errorf("balance: board of %d bytes, want %d", st.Size, size)
	}
	return mapFd(fd)
}

func mapFd(fd int) (*Board, error) {
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("balance: mmap: %w", err)
	}
	return &Board{mem: mem}, nil
}

// File is the memfd to hand to workers (the master's board only).
func (b *Board) File() *os.File { return b.file }

// Close unmaps the board (and closes the master's memfd). Connections and
// listeners of a worker must be done with it first.
func (b *Board) Close() error {
	if b.file != nil {
		b.file.Close()
	}
	return unix.Munmap(b.mem)
}

func (b *Board) header() *header { return (*header)(unsafe.Pointer(&b.mem[0])) }

func (b *Board) entry(i int) *entry {
	return (*entry)(unsafe.Pointer(&b.mem[entrySize*(i+1)]))
}

// Free clears the entries of pid (the master, when pid has exited).
func (b *Board) Free(pid int) {
	high := int(b.header().high.Load())
	for i := 0; i < high; i++ {
		if e := b.entry(i); e.pid.Load() == int64(pid) {
			e.active.Store(0)
			e.open.Store(0)
			e.accepted.Store(0)
			e.pid.CompareAndSwap(int64(pid), 0)
		}
	}
}

// claim takes a free entry for pid, not yet active, starting its accepted
// count at the active workers' average (a replacement does not have to catch up with
// workers that have served for hours). nil when the board is full.
func (b *Board) claim(pid int) *entry {
	h := b.header()
	for i := 0; i < Entries; i++ {
		e := b.entry(i)
		if !e.pid.CompareAndSwap(0, int64(pid)) {
			continue
		}
		for {
			high := h.high.Load()
			if int64(i) < high || h.high.CompareAndSwap(high, int64(i)+1) {
				break
			}
		}
		_, accepted, n := b.sums(e)
		if n > 0 {
			e.accepted.Store(accepted / int64(n))
		}
		e.open.Store(0)
		return e // active once it serves: see Worker.Listener
	}
	return nil
}

// peers is what the other active entries add up to: open connections
// over all of them, accepted connections over those that accepted since
// recent (a peer busy or stuck for longer does not hold the others back).
type peers struct {
	open, accepted int64
	n, live        int
}

// sums adds up the active entries other than me.
func (b *Board) sums(me *entry) (open, accepted int64, n int) {
	p := b.peers(me, 0)
	return p.open, p.accepted, p.n
}

func (b *Board) peers(me *entry, recent int64) peers {
	var p peers
	high := int(b.header().high.Load())
	for i := 0; i < high; i++ {
		e := b.entry(i)
		if e == me || e.active.Load() == 0 {
			continue
		}
		p.open += e.open.Load()
		p.n++
		if e.last.Load() >= recent {
			p.accepted += e.accepted.Load()
			p.live++
		}
	}
	return p
}

func monotonic() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
