// Package state holds the read-only state that a master shares with its
// workers: a sealed memory region, a read-only mapping of it, and the flat
// key/value table format that the demo stores in it.
//
// # Region and mapping
//
// The master loads the state once into an anonymous memory file (memfd),
// fills it with write(2) and seals it with F_SEAL_WRITE, F_SEAL_SHRINK,
// F_SEAL_GROW and F_SEAL_SEAL. From then on nobody, the master included,
// can change, shrink, grow or unseal it. The master hands the descriptor to
// each worker (os/exec Cmd.ExtraFiles, announced as PREFORK_STATE_FD and
// PREFORK_STATE_SIZE); the worker maps it PROT_READ, MAP_SHARED. Every worker
// of a generation maps the same pages, so N workers over S bytes cost about S
// of memory, not N×S (the pages show as Shared_Dirty and Pss_Shmem in
// /proc/<pid>/smaps_rollup: two workers that read all of a 64 MiB region
// have 32 MiB of Pss_Shmem each), and a worker's start does not grow with S.
//
// A write through the mapping faults with SIGSEGV (SEGV_ACCERR), which a Go
// worker does not survive: the runtime prints "unexpected fault address"
// and "fatal error: fault" and exits with status 2. The kernel refuses
// every way of making the region writable: mprotect to PROT_WRITE fails
// with EACCES; a new writable shared mmap, write(2), pwrite(2),
// ftruncate(2), fallocate(2) and a write through a fresh O_RDWR open of
// /proc/self/fd/N fail with EPERM. (A MAP_PRIVATE writable mapping is
// allowed: it is copy-on-write and changes nothing that others see.)
//
// Master side:
//
//	r, err := state.FromFile("/var/lib/app/state.tbl")
//	if err != nil { … }
//	defer r.Close()
//	cmd.ExtraFiles = append(cmd.ExtraFiles, r.File())
//	cmd.Env = append(cmd.Env,
//		fmt.Sprintf("PREFORK_STATE_FD=%d", 3+len(cmd.ExtraFiles)-1),
//		fmt.Sprintf("PREFORK_STATE_SIZE=%d", r.Size()))
//
// Worker side (map once for the life of the worker):
//
//	m, err := state.MapFd(fd, size) // checks the seals and the size
//	if err != nil { … }
//	unix.Close(fd) // the mapping stays valid
//	t, err := state.OpenTable(m.Bytes())
//	if err != nil { … }
//	v, ok := t.GetString("key-000042") // no copy, no allocation
//
// No slice or string that points into the mapping may outlive it: Close the
// Mapping only when nothing reads it any more (in practice, never close it
// before the worker exits).
//
// # Table format (version 1)
//
// A table is a byte string with no Go pointers in it, read in place. All
// integers are little-endian and unsigned.
//
//	offset  size  field
//	0       8     magic "PFKVTBL1" (0x50 0x46 0x4B 0x56 0x54 0x42 0x4C 0x31)
//	8       4     version, 1
//	12      4     flags, 0 (reserved; a table with any flag set is refused)
//	16      8     count: the number of entries, n
//	24      8     data size: the number of bytes in the data area, d
//	32      24×n  the entries, sorted by key (see below)
//	32+24n  d     the data area
//
// The table is exactly 32 + 24n + d bytes long: a longer or shorter byte
// string is refused. Entry i starts at byte 32 + 24i:
//
//	offset  size  field
//	0       8     key offset, counted from the start of the data area
//	8       8     value offset, counted from the start of the data area
//	16      4     key length
//	20      4     value length
//
// Every key and value lies inside the data area (offset + length ≤ d). Keys
// are arbitrary bytes (the empty key included) and are strictly increasing
// in bytes.Compare order, so there are no duplicates and a lookup is a binary
// search. Keys and values are limited to 4 GiB − 1 bytes each. A reader
// accepts any placement of keys and values in the data area (they may even
// overlap); BuildTable and WriteTable store key 0, value 0, key 1, value 1, …
// back to back, without padding.
//
// OpenTable checks all of this once, with overflow-safe arithmetic, so that
// no later lookup can read out of bounds or panic on a corrupt table.
//
// # Checksum
//
// Checksum is the CRC-32 of zlib, gzip and PNG (IEEE 802.3 polynomial,
// reflected 0xEDB88320, initial value and final xor 0xFFFFFFFF),
// zero-extended to 64 bits: in Go, crc32.ChecksumIEEE(b); in Python,
// zlib.crc32(b); the check value of "123456789" is 0xcbf43926. It was chosen
// over CRC-32C because Go computes it faster from memory (measured: 6.4
// against 4.1 GB/s over 64 MiB on AMD EPYC; both run at 8 to 16 GB/s once
// the data is in cache) and because every zlib reproduces it.
package state
