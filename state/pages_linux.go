//go:build linux

package state

import (
	"github.com/preforkd/preforkd/internal/procfs"
	"os"
	"strconv"
	"strings"
)

// The host's huge-page settings, read when a region is built.
const (
	thpDir      = "/sys/kernel/mm/transparent_hugepage/"
	defaultHuge = 2 << 20 // x86-64's PMD size, when the host does not say
	smallRegion = 2 << 20 // below this a region gains nothing from huge pages
)

// host is what decides a region's page mode.
type host struct {
	hugetlbSize  int64 // the default hugetlb page size (Hugepagesize), 0 if none
	hugetlbAvail int64 // free hugetlb pages that nobody reserved
	thp          bool  // shmem accepts transparent huge pages through MADV_HUGEPAGE
	pmdSize      int64 // the size of a PMD-mapped transparent huge page
}

// readHost reads /proc/meminfo and the transparent_hugepage settings. What
// it cannot read counts as unavailable.
func readHost() host {
	h := host{pmdSize: pmdSize()}
	if hp, err := procfs.ReadHugePages(); err == nil {
		h.hugetlbSize, h.hugetlbAvail = hp.PageSize, hp.Avail()
	}
	h.thp = shmemTHP(h.pmdSize)
	if !pagesAllowed(PagesHugeTLB) {
		h.hugetlbAvail = 0
	}
	if !pagesAllowed(PagesTHP) {
		h.thp = false
	}
	return h
}

// pmdSize is hpage_pmd_size, or 2 MiB when the host does not say.
func pmdSize() int64 {
	b, err := os.ReadFile(thpDir + "hpage_pmd_size")
	if err != nil {
		return defaultHuge
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n&(n-1) != 0 {
		return defaultHuge
	}
	return n
}

// shmemTHP tells whether a shmem mapping advised MADV_HUGEPAGE gets huge
// pages of pmd bytes: the global shmem_enabled is advise, within_size,
// always or force, and the per-size setting (Linux ≥ 6.11) is inherit or
// one of those too.
func shmemTHP(pmd int64) bool {
	allows := func(v string) bool {
		switch v {
		case "advise", "within_size", "always", "force":
			return true
		}
		return false
	}
	global, ok := bracketed(thpDir + "shmem_enabled")
	if !ok {
		return false
	}
	per, ok := bracketed(thpDir + "hugepages-" + strconv.FormatInt(pmd>>10, 10) + "kB/shmem_enabled")
	if !ok || per == "inherit" {
		return allows(global)
	}
	return allows(per)
}

// bracketed returns the [selected] word of a sysfs choice file.
func bracketed(path string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	s := string(b)
	i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return "", false
	}
	return s[i+1 : j], true
}

// choose picks the page mode for a region of size bytes (-1: more than
// smallRegion, exact size unknown).
func (h host) choose(size int64) string {
	if size >= 0 && size < smallRegion {
		return Pages4K
	}
	if h.hugetlbSize > 0 && h.hugetlbAvail > 0 {
		if size < 0 || h.hugetlbAvail >= (size+h.hugetlbSize-1)/h.hugetlbSize {
			return PagesHugeTLB
		}
	}
	if h.thp {
		return PagesTHP
	}
	return Pages4K
}

// next is the mode to fall back to when filling a region in mode failed
// for want of huge pages.
func (h host) next(mode string) string {
	if mode == PagesHugeTLB && h.thp {
		return PagesTHP
	}
	return Pages4K
}

// alignOf is the huge page size a mode fills and maps in.
func (h host) alignOf(mode string) int64 {
	if mode == PagesHugeTLB {
		return h.hugetlbSize
	}
	return h.pmdSize
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }
