package state

import (
	"fmt"
	"sync/atomic"
)

// The page modes of a region, as Region.PageMode reports them. The bytes a
// worker sees are the same in every mode; what changes is how many page
// table entries a worker needs to map them (one per 4 KiB page, or one per
// 2 MiB huge page on x86-64), so the cost of a worker's first read of the
// region and of its exit, which both grow with that count.
const (
	// PagesHugeTLB: the region lives in huge pages that the host reserved
	// (vm.nr_hugepages) and that were free, when SetPages allows it: a
	// hugetlbfs memfd
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

// pageLimit is the largest page mode SetPages allows ("": PagesTHP).
var pageLimit atomic.Value

// SetPages bounds the page mode of the regions built from now on (a
// process-wide setting, for the master's -state-pages): PagesTHP (the
// default) lets a region take transparent huge pages where the host allows
// them, else ordinary pages; PagesHugeTLB lets it take free reserved huge
// pages first (the host's vm.nr_hugepages pool, which may belong to
// something else, a database say: so only when asked); Pages4K uses
// ordinary pages only. Regions built before keep their mode. Any other
// value is an error.
func SetPages(limit string) error {
	switch limit {
	case PagesHugeTLB, PagesTHP, Pages4K:
		pageLimit.Store(limit)
		return nil
	}
	return fmt.Errorf("state pages %q: want %s, %s or %s", limit, PagesHugeTLB, PagesTHP, Pages4K)
}

// pagesAllowed reports whether SetPages allows mode.
func pagesAllowed(mode string) bool {
	limit, _ := pageLimit.Load().(string)
	switch limit {
	case Pages4K:
		return mode == Pages4K
	case PagesHugeTLB:
		return true
	}
	return mode != PagesHugeTLB
}
