//go:build linux

package integration

import (
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

const (
	shmemEnabled = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
	nrHugepages  = "/proc/sys/vm/nr_hugepages"
)

// crcOf is the demo's /state answer for a file (size and CRC-32).
func crcOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("size=%d checksum=%016x", len(b), crc32.ChecksumIEEE(b))
}

// The master builds the -state region in the pages the host allows and
// says which (log, ctl status); every worker serves the file's exact
// bytes in each mode; -state-pages chooses (the reserved pool only with
// hugetlb, though pages are free for it here); a new master that
// takes the region over at an upgrade reports the same mode.
func TestStatePages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.bin")
	writeRandomFile(t, path, 9*mib+12345) // not a whole number of huge pages
	want := crcOf(t, path)
	testutil.SetKnob(t, shmemEnabled, "advise")
	// Enough reserved pages for the region (5 of 2 MiB), plus some.
	prev, _ := os.ReadFile(nrHugepages)
	n, _ := strconv.Atoi(strings.TrimSpace(string(prev)))
	testutil.SetKnob(t, nrHugepages, strconv.Itoa(n+8))

	for _, c := range []struct{ flag, want string }{{"hugetlb", "hugetlb"}, {"auto", "thp"}, {"4k", "4k"}} {
		t.Run(c.flag, func(t *testing.T) {
			m := startMaster(t, Opts{Workers: 2, Args: []string{"-state", path, "-state-pages", c.flag}})
			if l := logLines(m.Log.String(), "state region loaded", "pages="+c.want); len(l) != 1 {
				t.Fatalf("-state-pages %s: no `state region loaded … pages=%s` line:\n%s", c.flag, c.want, m.Log.String())
			}
			if st := m.Status(); st.StatePages != c.want {
				t.Errorf("ctl status state_pages %q, want %q", st.StatePages, c.want)
			}
			st := m.WaitWorkers(2, 30*time.Second)
			for pid, a := range touchAllWorkers(t, m, st.ReadyPIDs()) {
				if a != want {
					t.Errorf("worker %d in %s pages: %q, want %q", pid, c.want, a, want)
				}
			}
			if c.flag == "hugetlb" {
				m.Upgrade("v2", 2)
				if st := m.Status(); st.StatePages != "hugetlb" {
					t.Errorf("after a take-over: state_pages %q, want hugetlb", st.StatePages)
				}
				st := m.WaitWorkers(2, 30*time.Second)
				for pid, a := range touchAllWorkers(t, m, st.ReadyPIDs()) {
					if a != want {
						t.Errorf("new worker %d: %q, want %q", pid, a, want)
					}
				}
			}
		})
	}
}
