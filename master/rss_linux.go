//go:build linux

package master

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

var pageSize = uint64(os.Getpagesize())

// readRSS reads the resident set size of pid from /proc/<pid>/statm.
func readRSS(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, fmt.Errorf("statm of %d: %q", pid, b)
	}
	pages, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("statm of %d: %w", pid, err)
	}
	return pages * pageSize, nil
}
