//go:build linux

package state

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/preforkd/preforkd/internal/procfs"
)

// TestRegionShared: workers that map and read the region share its pages.
// Each of N workers is charged Size/N of proportional memory (Pss_Shmem)
// while its Rss and Shared_Dirty count the whole region.
func TestRegionShared(t *testing.T) {
	const (
		size    = 64 << 20
		workers = 2
		slack   = 2 << 20 // other shmem pages, rounding
	)
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	// In 4 KiB pages: smaps_rollup's Pss leaves hugetlb pages out.
	r := buildIn(t, Pages4K, data)

	var pids []int
	for range workers {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=touch", sizeEnv+"="+strconv.Itoa(size))
		cmd.ExtraFiles = []*os.File{r.File()}
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			stdin.Close() // the helper exits on EOF
			if err := cmd.Wait(); err != nil {
				t.Errorf("helper %d: %v", cmd.Process.Pid, err)
			}
		})
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if !strings.HasPrefix(line, "ready ") {
			cmd.Process.Kill()
			t.Fatalf("helper did not get ready: %q, %v", line, err)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	for _, pid := range pids {
		m, err := procfs.ReadSmapsRollup(pid)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pid %d: Rss %d KiB, Pss %d KiB, Pss_Shmem %d KiB, Shared_Dirty %d KiB",
			pid, m.Rss>>10, m.Pss>>10, m.PssShmem>>10, m.SharedDirty>>10)
		if want := uint64(size / workers); m.PssShmem < want-slack || m.PssShmem > want+slack {
			t.Errorf("pid %d: Pss_Shmem %d, want about %d", pid, m.PssShmem, want)
		}
		if m.SharedDirty < size || m.Rss < size {
			t.Errorf("pid %d: Shared_Dirty %d, Rss %d, want both ≥ %d", pid, m.SharedDirty, m.Rss, size)
		}
	}
}
