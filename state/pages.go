package state

// The page modes of a region, as Region.PageMode reports them. The bytes a
// worker sees are the same in every mode; what changes is how many page
// table entries a worker needs to map them (one per 4 KiB page, or one per
// 2 MiB huge page on x86-64), so the cost of a worker's first read of the
// region and of its exit, which both grow with that count.
const (
	// PagesHugeTLB: the region lives in huge pages that the host reserved
	// (vm.nr_hugepages) and that were free: a hugetlbfs memfd
	// (MFD_HUGETLB), whose file is the state rounded up to a whole huge
	// page, zero-filled.
	PagesHugeTLB = "hugetlb"
	// PagesTHP: the region is an ordinary (shmem) memfd filled through a
	// mapping advised MADV_HUGEPAGE, so its page cache holds transparent
	// huge pages; the host allows it when
	// /sys/kernel/mm/transparent_hugepage/shmem_enabled is advise,
	// within_size, always or force. A huge page the kernel could not find
	// at the time is an ordinary page instead, silently.
	PagesTHP = "thp"
	// Pages4K: ordinary pages (4 KiB on x86-64), as without huge pages.
	Pages4K = "4k"
)
