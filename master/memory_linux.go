//go:build linux

package master

import "github.com/preforkd/preforkd/internal/procfs"

// readMemory reads a worker's memory from /proc/<pid>/smaps_rollup.
func readMemory(pid int) (Memory, error) {
	mem, err := procfs.ReadSmapsRollup(pid)
	if err != nil {
		return Memory{}, err
	}
	return Memory{RSS: mem.Rss, PSS: mem.Pss, PSSShmem: mem.PssShmem}, nil
}
