//go:build linux

package state

import (
	"bytes"
	"github.com/preforkd/preforkd/internal/testutil"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// randomData is n deterministic pseudo-random bytes.
func randomData(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{'h', 'u', 'g', 'e'}).Read(b)
	return b
}

// checkServed runs a worker process over r that reads every byte, and
// checks the checksum it computed and what maps its pages: huge pages in
// the huge modes (as smaps counts them), ordinary ones in 4k.
func checkServed(t *testing.T, r *Region, data []byte, mode string) {
	t.Helper()
	stdout, _, ws := runWorker(t, "sum", r)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("helper ended with %#x, want exit status 0", uint32(ws))
	}
	sum, u := parsePageUse(t, stdout)
	if want := Checksum(data); sum != want {
		t.Errorf("the worker's checksum is %016x, want %016x", sum, want)
	}
	size := int64(len(data))
	switch mode {
	case PagesHugeTLB:
		if want := roundUp(size, hugeTestPageBytes); u.hugetlb != want {
			t.Errorf("the worker maps %d bytes of hugetlb pages, want %d (%s)", u.hugetlb, want, u)
		}
	case PagesTHP:
		if want := size &^ (hugeTestPageBytes - 1); u.pmd < want {
			t.Errorf("the worker maps %d bytes with huge page-table entries, want ≥ %d (%s)", u.pmd, want, u)
		}
	case Pages4K:
		if u.pmd != 0 || u.hugetlb != 0 || u.rss < size {
			t.Errorf("the worker maps %d bytes in huge pages and %d in all, want 0 and ≥ %d (%s)", u.pmd+u.hugetlb, u.rss, size, u)
		}
	}
	if mode != Pages4K && u.addr%hugeTestPageBytes != 0 {
		t.Errorf("the worker's mapping is at %#x, not on a 2 MiB boundary", u.addr)
	}
}

// TestPageModesServe: in each page mode a worker process maps the region
// and reads exactly the bytes given (a size that is no multiple of any
// page), in huge pages where the mode says so.
func TestPageModesServe(t *testing.T) {
	data := randomData(64<<20 + 12345)
	forEachMode(t, int64(len(data)), func(t *testing.T, mode string, build func([]byte) *Region) {
		_, before := hugetlbCounts(t)
		r := build(data)
		if mode == PagesHugeTLB {
			if _, after := hugetlbCounts(t); before-after != roundUp(int64(len(data)), hugeTestPageBytes)/hugeTestPageBytes {
				t.Errorf("free hugetlb pages went from %d to %d for %d bytes", before, after, len(data))
			}
		}
		checkServed(t, r, data, mode)
		if sum, err := r.Checksum(); err != nil || sum != Checksum(data) {
			t.Errorf("Region.Checksum = %016x, %v; want %016x", sum, err, Checksum(data))
		}
	})
}

// TestPageModeChosen: with the host set up for a mode, FromBytes picks it
// by itself (hugetlb before THP before 4k), and a small region stays in
// ordinary pages.
func TestPageModeChosen(t *testing.T) {
	data := randomData(8 << 20)
	for _, mode := range []string{PagesHugeTLB, PagesTHP} {
		t.Run(mode, func(t *testing.T) {
			setupMode(t, mode, int64(len(data)))
			if mode == PagesTHP {
				reserveHugetlb(t, 0)
			} else {
				SetPages(PagesHugeTLB) // the reserved pool only when asked
				defer SetPages(PagesTHP)
			}
			r := newRegion(t, data)
			if r.PageMode() != mode {
				t.Fatalf("FromBytes built the region in %s, want %s", r.PageMode(), mode)
			}
			checkServed(t, r, data, mode)
			small := newRegion(t, data[:1<<20])
			if small.PageMode() != Pages4K {
				t.Errorf("a 1 MiB region is in %s, want %s", small.PageMode(), Pages4K)
			}
		})
	}
}

// TestHugetlbNoneFree: hugetlb asked for while no huge page is free: the
// region is built in the next mode the host allows, without an error.
func TestHugetlbNoneFree(t *testing.T) {
	data := randomData(8 << 20)
	for _, tc := range []struct{ shmem, want string }{{"advise", PagesTHP}, {"never", Pages4K}} {
		t.Run("to "+tc.want, func(t *testing.T) {
			testutil.SetKnob(t, shmemEnabledPath, tc.shmem)
			reserveHugetlb(t, 0)
			r, err := fill(t.Name(), bytes.NewReader(data), int64(len(data)), nil, PagesHugeTLB)
			if err != nil {
				t.Fatalf("hugetlb without free pages: %v, want a fallback", err)
			}
			t.Cleanup(func() { r.Close() })
			if r.PageMode() != tc.want {
				t.Fatalf("built in %s, want %s", r.PageMode(), tc.want)
			}
			checkServed(t, r, data, tc.want)
			if auto := newRegion(t, data); auto.PageMode() != tc.want {
				t.Errorf("FromBytes without free hugetlb pages built in %s, want %s", auto.PageMode(), tc.want)
			}
		})
	}
}

// TestHugetlbRunsOut: hugetlb pages that run out in the middle of a source
// of unknown size (the first 64 MiB window fits, the second does not): the
// bytes already copied are carried over into a 4k region, progress is told
// each byte once, and the abandoned huge pages are given back.
func TestHugetlbRunsOut(t *testing.T) {
	data := randomData(100 << 20)
	testutil.SetKnob(t, shmemEnabledPath, "never")
	const pages = 40 // 80 MiB
	reserveHugetlb(t, pages)
	var calls []int64
	inHuge := int64(-1) // free hugetlb pages once the first window is copied
	progress := func(n int64) {
		if calls = append(calls, n); len(calls) == 1 {
			_, inHuge = hugetlbCounts(t)
		}
	}
	// Short reads, as from a pipe.
	src := iotest.HalfReader(bytes.NewReader(data))
	r, err := fill(t.Name(), src, -1, progress, PagesHugeTLB)
	if err != nil {
		t.Fatalf("hugetlb that runs out: %v, want a fallback", err)
	}
	t.Cleanup(func() { r.Close() })
	if r.PageMode() != Pages4K || r.Size() != int64(len(data)) {
		t.Fatalf("built %d bytes in %s, want %d in %s", r.Size(), r.PageMode(), len(data), Pages4K)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i] <= calls[i-1] {
			t.Errorf("progress went %d → %d", calls[i-1], calls[i])
		}
	}
	if len(calls) == 0 || calls[len(calls)-1] != int64(len(data)) {
		t.Errorf("progress calls %v, want the last at %d", calls, len(data))
	}
	if want := int64(pages - chunk/hugeTestPageBytes); inHuge != want {
		t.Errorf("%d hugetlb pages free after the first window, want %d: it was not in hugetlb pages", inHuge, want)
	}
	if _, avail := hugetlbCounts(t); avail != pages {
		t.Errorf("%d hugetlb pages free after the fallback, want all %d back", avail, pages)
	}
	checkServed(t, r, data, Pages4K)
}

// TestHostChoose: the mode picked for each host and size.
func TestHostChoose(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		h    host
		size int64
		want string
	}{
		{host{hugetlbSize: 2 * mib, hugetlbAvail: 600, thp: true, pmdSize: 2 * mib}, 1 << 30, PagesHugeTLB},
		{host{hugetlbSize: 2 * mib, hugetlbAvail: 512, thp: true, pmdSize: 2 * mib}, 1<<30 + 1, PagesTHP},
		{host{hugetlbSize: 2 * mib, hugetlbAvail: 512, pmdSize: 2 * mib}, 1<<30 + 1, Pages4K},
		{host{hugetlbSize: 2 * mib, hugetlbAvail: 1, pmdSize: 2 * mib}, -1, PagesHugeTLB},
		{host{hugetlbSize: 2 * mib, hugetlbAvail: 600, thp: true, pmdSize: 2 * mib}, 2*mib - 1, Pages4K},
		{host{thp: true, pmdSize: 2 * mib}, 2 * mib, PagesTHP},
		{host{pmdSize: 2 * mib}, 1 << 30, Pages4K},
	} {
		if got := tc.h.choose(tc.size); got != tc.want {
			t.Errorf("%+v, %d bytes: %s, want %s", tc.h, tc.size, got, tc.want)
		}
	}
}
