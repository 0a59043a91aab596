//go:build linux

package procfs

import "testing"

func TestParseHugePages(t *testing.T) {
	in := "MemTotal:       24000000 kB\nHugePages_Total:      40\nHugePages_Free:       30\nHugePages_Rsvd:        4\nHugePages_Surp:        0\nHugepagesize:       2048 kB\nHugetlb:           81920 kB\n"
	h := parseHugePages([]byte(in))
	if h != (HugePages{Total: 40, Free: 30, Rsvd: 4, PageSize: 2 << 20}) || h.Avail() != 26 {
		t.Fatalf("%+v avail %d", h, h.Avail())
	}
	if got, err := ReadHugePages(); err != nil || got.PageSize <= 0 {
		t.Fatalf("this host: %+v, %v", got, err)
	}
}
