//go:build linux

package procfs

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sample is /proc/<pid>/smaps_rollup of a worker that maps a 1 GiB state
// region shared by 4 workers, on Linux 6.18.
const sample = `55d0c6a4b000-7ffd5b3f1000 ---p 00000000 00:00 0                          [rollup]
Rss:             1065364 kB
Pss:              283004 kB
Pss_Dirty:        271580 kB
Pss_Anon:           9436 kB
Pss_File:          11424 kB
Pss_Shmem:        262144 kB
Shared_Clean:       5196 kB
Shared_Dirty:    1048576 kB
Private_Clean:      2156 kB
Private_Dirty:      9436 kB
Referenced:      1065364 kB
Anonymous:          9436 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
`

func TestParseSmapsRollup(t *testing.T) {
	got, err := ParseSmapsRollup(iotest.HalfReader(strings.NewReader(sample)))
	if err != nil {
		t.Fatal(err)
	}
	const kB = 1024
	want := Memory{
		Rss:          1065364 * kB,
		Pss:          283004 * kB,
		PssShmem:     262144 * kB,
		PssAnon:      9436 * kB,
		PssFile:      11424 * kB,
		SharedDirty:  1048576 * kB,
		SharedClean:  5196 * kB,
		PrivateDirty: 9436 * kB,
		PrivateClean: 2156 * kB,
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseSmapsRollupOldKernel(t *testing.T) {
	// Older kernels print no Pss_Anon/Pss_File/Pss_Shmem lines.
	in := "00400000-7fff ---p 00000000 00:00 0 [rollup]\nRss: 100 kB\nPss: 50 kB\nShared_Clean: 60 kB\n"
	got, err := ParseSmapsRollup(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Memory{Rss: 100 << 10, Pss: 50 << 10, SharedClean: 60 << 10}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseSmapsRollupErrors(t *testing.T) {
	tests := []struct {
		name, in string
		is       error
		msg      string
	}{
		{"empty", "", ErrNoMemoryMap, "no memory map"},
		{"blank", "\n", ErrNoMemoryMap, "no memory map"},
		{"no Pss", "Rss: 1 kB\n", ErrFormat, "no Rss or no Pss"},
		{"no Rss", "Pss: 1 kB\n", ErrFormat, "no Rss or no Pss"},
		{"no unit", "Rss: 1\nPss: 1 kB\n", ErrFormat, `line 1: "Rss: 1"`},
		{"other unit", "Rss: 1 MB\nPss: 1 kB\n", ErrFormat, "line 1"},
		{"not a number", "Rss: 1 kB\nPss: x kB\n", ErrFormat, `line 2: "Pss: x kB"`},
		{"negative", "Rss: -1 kB\nPss: 1 kB\n", ErrFormat, "line 1"},
		{"no digits", "Rss:  kB\nPss: 1 kB\n", ErrFormat, "line 1"},
		{"overflow", "Rss: 99999999999999999999 kB\nPss: 1 kB\n", ErrFormat, "line 1"},
		{"overflow in bytes", "Rss: 18014398509481984 kB\nPss: 1 kB\n", ErrFormat, "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSmapsRollup(strings.NewReader(tt.in))
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v, want %v with %q", err, tt.is, tt.msg)
			}
		})
	}
	boom := errors.New("boom")
	if _, err := ParseSmapsRollup(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("error %v, want boom", err)
	}
}

func TestReadSmapsRollupSelf(t *testing.T) {
	m, err := ReadSmapsRollup(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", m)
	if m.Rss == 0 || m.Pss == 0 || m.Pss > m.Rss {
		t.Errorf("implausible: Rss %d, Pss %d", m.Rss, m.Pss)
	}
	if sum := m.SharedClean + m.SharedDirty + m.PrivateClean + m.PrivateDirty; sum != m.Rss {
		t.Errorf("shared + private = %d, want Rss %d", sum, m.Rss)
	}
	if m.Rss%1024 != 0 {
		t.Errorf("Rss %d is not a whole number of KiB", m.Rss)
	}
}

func TestReadSmapsRollupAllocations(t *testing.T) {
	pid := os.Getpid()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ReadSmapsRollup(pid); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per call, want 0", allocs)
	}
}

func TestReadSmapsRollupErrors(t *testing.T) {
	// Pids are below 2^22 on Linux; this one cannot exist.
	_, err := ReadSmapsRollup(1 << 30)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/proc/1073741824/smaps_rollup") {
		t.Errorf("missing process: error %v, want one that is fs.ErrNotExist and names the path", err)
	}
	for _, pid := range []int{0, -1} {
		if _, err := ReadSmapsRollup(pid); err == nil {
			t.Errorf("ReadSmapsRollup(%d) succeeded", pid)
		}
	}
}

func BenchmarkReadSmapsRollup(b *testing.B) {
	pid := os.Getpid()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadSmapsRollup(pid); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSmapsRollup(b *testing.B) {
	in := []byte(sample)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parse(in); err != nil {
			b.Fatal(err)
		}
	}
}
