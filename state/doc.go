// Package state holds the read-only state that a master shares with its
// workers: a sealed memory region and a read-only mapping of it. What the
// bytes mean is the program's affair; package state/table is a flat
// key/value format that is read in place, without parsing or copying.
//
// # Region and mapping
//
// The master loads the state once into an anonymous memory file (memfd),
// fills it (with write(2), or through a mapping that it unmaps before
// sealing) and seals it with F_SEAL_WRITE, F_SEAL_SHRINK,
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
//	t, err := table.Open(m.Bytes())       // package state/table
//	if err != nil { … }
//	v, ok := t.GetString("key-000042") // no copy, no allocation
//
// A Go worker built on package server does not map anything itself:
// w.State() is the mapped region.
//
// No slice or string that points into the mapping may outlive it: Close the
// Mapping only when nothing reads it any more (in practice, never close it
// before the worker exits).
//
// # Huge pages
//
// A region of 2 MiB or more is built in huge pages where the host allows:
// a hugetlbfs memfd (MFD_HUGETLB) when enough hugetlb pages are reserved
// and free, else shmem transparent huge pages when shmem_enabled allows
// them, else ordinary 4 KiB pages (Region.PageMode says which; a mode
// whose pages run out falls back to the next, never an error). A worker
// that reads all of a region in huge pages needs one page-table entry per
// 2 MiB instead of one per 4 KiB (x86-64): its first read faults 512 times
// less, and its exit has 512 times fewer entries to clear. On a host:
//
//	# hugetlb: reserve the region's size (here 1 GiB and one spare page)
//	echo 513 > /proc/sys/vm/nr_hugepages        # or vm.nr_hugepages in sysctl.d
//	# or THP for shmem mappings that ask for it
//	echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled
//
// Reserved hugetlb pages are memory set aside for whoever asks first:
// reserve them for preforkd only when nothing else on the host counts on
// them. The seals hold in every mode; a hugetlb region also refuses
// write(2) (EINVAL: hugetlbfs has none), and its file is the state rounded
// up to a whole huge page, the rest zeros, of which workers map exactly
// Region.Size bytes.
//
// # Checksum
//
// Checksum is the CRC-32 of zlib, gzip and PNG (IEEE 802.3 polynomial,
// reflected 0xEDB88320, initial value and final xor 0xFFFFFFFF),
// zero-extended to 64 bits: in Go, crc32.ChecksumIEEE(b); in Python,
// zlib.crc32(b); the check value of "123456789" is 0xcbf43926. It was chosen
// over CRC-32C because Go computes it faster from memory  and because every zlib reproduces it.
package state
