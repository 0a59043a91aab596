//go:build linux

package procfs

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// HugePages are the hugetlb figures of /proc/meminfo: the pool's size in
// pages (HugePages_Total), the pages free (HugePages_Free) and, of those,
// promised to mappings already (HugePages_Rsvd), and the default huge page
// size in bytes (Hugepagesize).
type HugePages struct {
	Total, Free, Rsvd int64
	PageSize          int64
}

// Avail is the pages a new mapping can take: free and not reserved.
func (h HugePages) Avail() int64 { return max(0, h.Free-h.Rsvd) }

// ReadHugePages reads /proc/meminfo's hugetlb figures.
func ReadHugePages() (HugePages, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return HugePages{}, err
	}
	return parseHugePages(b), nil
}

func parseHugePages(b []byte) HugePages {
	var h HugePages
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "HugePages_Total":
			h.Total = n
		case "HugePages_Free":
			h.Free = n
		case "HugePages_Rsvd":
			h.Rsvd = n
		case "Hugepagesize":
			h.PageSize = n << 10
		}
	}
	return h
}
