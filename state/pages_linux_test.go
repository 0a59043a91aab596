//go:build linux

package state

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/preforkd/preforkd/internal/procfs"
	"github.com/preforkd/preforkd/internal/testutil"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The host settings the huge-page tests change, and put back.
const (
	nrHugepagesPath   = "/proc/sys/vm/nr_hugepages"
	shmemEnabledPath  = thpDir + "shmem_enabled"
	hugeTestPageBytes = 2 << 20
)

// pageUse is what /proc/<pid>/smaps says of one mapping, in bytes.
type pageUse struct {
	addr     uintptr
	rss      int64
	pmd      int64 // ShmemPmdMapped + FilePmdMapped: mapped by huge page-table entries
	hugetlb  int64 // Shared_Hugetlb + Private_Hugetlb
	found    bool
	vmaBytes int64
}

func (u pageUse) String() string {
	return fmt.Sprintf("addr=%#x vma=%d rss=%d pmd=%d hugetlb=%d", u.addr, u.vmaBytes, u.rss, u.pmd, u.hugetlb)
}

// readPageUse reads /proc/self/smaps for the mapping that starts at addr.
func readPageUse(addr uintptr) (pageUse, error) {
	u := pageUse{addr: addr}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return u, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(fields[0], "-"); ok && !strings.HasSuffix(fields[0], ":") {
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				in = uintptr(start) == addr
				if in {
					u.found, u.vmaBytes = true, int64(end-start)
				}
				continue
			}
		}
		if !in || len(fields) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Rss:":
			u.rss += kb << 10
		case "ShmemPmdMapped:", "FilePmdMapped:":
			u.pmd += kb << 10
		case "Shared_Hugetlb:", "Private_Hugetlb:":
			u.hugetlb += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return u, err
	}
	if !u.found {
		return u, fmt.Errorf("no mapping at %#x in /proc/self/smaps", addr)
	}
	return u, nil
}

// parsePageUse reads the "sum=… addr=… …" line of the helper's "sum" role.
func parsePageUse(t *testing.T, line string) (uint64, pageUse) {
	t.Helper()
	var sum uint64
	var u pageUse
	if _, err := fmt.Sscanf(strings.TrimSpace(line), "sum=%x addr=%v vma=%d rss=%d pmd=%d hugetlb=%d",
		&sum, &u.addr, &u.vmaBytes, &u.rss, &u.pmd, &u.hugetlb); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	return sum, u
}

// hugetlbCounts is /proc/meminfo's HugePages_Total and the pages free and
// not reserved (HugePages_Free less HugePages_Rsvd).
func hugetlbCounts(t *testing.T) (total, avail int64) {
	t.Helper()
	hp, err := procfs.ReadHugePages()
	if err != nil {
		t.Fatal(err)
	}
	return hp.Total, hp.Free - hp.Rsvd
}

// reserveHugetlb makes exactly pages hugetlb pages free (and not
// reserved) for the test, and puts vm.nr_hugepages back afterwards.
func reserveHugetlb(t *testing.T, pages int64) {
	t.Helper()
	if h := readHost(); h.hugetlbSize != hugeTestPageBytes {
		t.Fatalf("the default hugetlb page size is %d bytes; these tests are written for 2 MiB (x86-64's)", h.hugetlbSize)
	}
	total, avail := hugetlbCounts(t)
	testutil.SetKnob(t, nrHugepagesPath, strconv.FormatInt(total-avail+pages, 10))
	if _, got := hugetlbCounts(t); got != pages {
		t.Fatalf("the kernel could not make %d huge pages free (memory too fragmented?): %d are", pages, got)
	}
}

// setupMode sets the host up so that a region of size bytes can be built
// in mode (buildIn), until the test ends.
func setupMode(t *testing.T, mode string, size int64) {
	t.Helper()
	switch mode {
	case PagesHugeTLB:
		reserveHugetlb(t, roundUp(size, hugeTestPageBytes)/hugeTestPageBytes+2) // +2: a private mapping's copy
	case PagesTHP:
		testutil.SetKnob(t, shmemEnabledPath, "advise")
	case Pages4K:
		if readHost().thp {
			testutil.SetKnob(t, shmemEnabledPath, "never") // so that no page is huge by chance
		}
	}
}

// buildIn builds a region of data in mode (set up with setupMode),
// closed when the test ends.
func buildIn(t *testing.T, mode string, data []byte) *Region {
	t.Helper()
	r, err := fill(t.Name(), bytes.NewReader(data), int64(len(data)), nil, mode)
	if err != nil {
		t.Fatalf("build in %s: %v", mode, err)
	}
	t.Cleanup(func() { r.Close() })
	if r.PageMode() != mode {
		t.Fatalf("built in %s, want %s", r.PageMode(), mode)
	}
	if r.Size() != int64(len(data)) {
		t.Fatalf("Size() = %d, want %d", r.Size(), len(data))
	}
	return r
}

// forEachMode runs f once per page mode, each on a host set up for it
// (skipped where that cannot be done), with a builder of regions in it.
func forEachMode(t *testing.T, size int64, f func(t *testing.T, mode string, build func([]byte) *Region)) {
	for _, mode := range []string{Pages4K, PagesTHP, PagesHugeTLB} {
		t.Run(mode, func(t *testing.T) {
			setupMode(t, mode, size)
			f(t, mode, func(b []byte) *Region { return buildIn(t, mode, b) })
		})
	}
}

// SetPages bounds the mode the host allows: with both a free reserved
// pool and shmem THP allowed, a region takes THP by default (the reserved
// pool is not ours unless asked), hugetlb under SetPages(hugetlb),
// ordinary pages under SetPages(4k); a bad value is refused.
func TestSetPagesBounds(t *testing.T) {
	defer SetPages(PagesTHP)
	if err := SetPages("big"); err == nil || !strings.Contains(err.Error(), `"big"`) {
		t.Fatalf("SetPages(big) = %v, want an error naming it", err)
	}
	const size = 8 << 20
	setupMode(t, PagesHugeTLB, size)
	setupMode(t, PagesTHP, size)
	if r, err := FromBytes("default", make([]byte, size)); err != nil || r.PageMode() != PagesTHP {
		t.Fatalf("by default: %v, %v: want a region in %s pages", r, err, PagesTHP)
	} else {
		r.Close()
	}
	for _, limit := range []string{PagesHugeTLB, PagesTHP, Pages4K} {
		if err := SetPages(limit); err != nil {
			t.Fatal(err)
		}
		r, err := FromBytes("limited", make([]byte, size))
		if err != nil {
			t.Fatal(err)
		}
		if m := r.PageMode(); m != limit {
			t.Errorf("SetPages(%s): the region is in %s pages", limit, m)
		}
		r.Close()
	}
}
