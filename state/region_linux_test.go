//go:build linux

package state

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRegionRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 4095, 4096, 4097, 1 << 20} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		r := newRegion(t, data)
		if got := r.Size(); got != int64(size) {
			t.Fatalf("size %d: Size() = %d", size, got)
		}
		// As a worker would: its own descriptor number, then close it.
		fd, err := unix.Dup(int(r.File().Fd()))
		if err != nil {
			t.Fatal(err)
		}
		m, err := MapFd(fd, int64(size))
		if err != nil {
			t.Fatalf("size %d: MapFd: %v", size, err)
		}
		if err := unix.Close(fd); err != nil {
			t.Fatal(err)
		}
		got := m.Bytes()
		if !bytes.Equal(got, data) || len(got) != cap(got) {
			t.Errorf("size %d: mapping holds %d bytes (cap %d), not the data", size, len(got), cap(got))
		}
		if err := m.Close(); err != nil {
			t.Errorf("size %d: Close: %v", size, err)
		}
		if err := m.Close(); err != nil {
			t.Errorf("size %d: second Close: %v", size, err)
		}
		if m.Bytes() != nil {
			t.Errorf("size %d: Bytes after Close is not nil", size)
		}
	}
}

func TestRegionSealed(t *testing.T) {
	r := newRegion(t, []byte("hello"))
	seals, err := unix.FcntlInt(r.File().Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL
	if seals != want {
		t.Errorf("seals = %#x (%s), want %#x", seals, sealNames(seals), want)
	}
	flags, err := unix.FcntlInt(r.File().Fd(), unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.FD_CLOEXEC == 0 {
		t.Error("the memfd is not close-on-exec")
	}
	// The offset is rewound, so the file reads from the start.
	b, err := io.ReadAll(r.File())
	if err != nil || string(b) != "hello" {
		t.Errorf("reading the file gives %q, %v", b, err)
	}
}

func TestRegionClose(t *testing.T) {
	r, err := FromBytes("x", []byte("abc"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Map()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if string(m.Bytes()) != "abc" {
		t.Errorf("the mapping does not survive the region's Close: %q", m.Bytes())
	}
}

func TestFromFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.tbl")
	data := sampleData(1000)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := FromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !strings.Contains(r.File().Name(), "state.tbl") {
		t.Errorf("the memfd is named %q, want the file's base name", r.File().Name())
	}
	checkUnchanged(t, r, data)
	sum, err := r.Checksum()
	if err != nil || sum != Checksum(data) {
		t.Errorf("Checksum() = %#x, %v, want %#x", sum, err, Checksum(data))
	}
}

func TestFromFileErrors(t *testing.T) {
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "unreadable")
	if err := os.WriteFile(unreadable, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		is         error  // nil: no check
		msg        string // the error mentions this after the path
		skip       bool
	}{
		{name: "missing", path: filepath.Join(dir, "missing"), is: fs.ErrNotExist, msg: "no such file or directory"},
		{name: "directory", path: dir, msg: "not a regular file (a directory)"},
		// root reads any file: the directory case covers an unreadable file then.
		{name: "no permission", path: unreadable, is: fs.ErrPermission, msg: "permission denied", skip: os.Geteuid() == 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip {
				t.Skip("running as root")
			}
			r, err := FromFile(tt.path)
			if err == nil {
				r.Close()
				t.Fatal("FromFile succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			prefix := `state "` + tt.path + `": `
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q, want %q…%s", err, prefix, tt.msg)
			}
		})
	}
}

func TestFromBytesNames(t *testing.T) {
	long := strings.Repeat("n", 300)
	r, err := FromBytes(long, []byte("x"))
	if err != nil {
		t.Fatalf("a 300-byte name: %v", err)
	}
	r.Close()
	r, err = FromBytes("nul\x00byte", []byte("x"))
	if err == nil {
		r.Close()
		t.Fatal("a name with a NUL byte was accepted")
	}
	if !strings.HasPrefix(err.Error(), `state: memfd_create "nul\x00byte": `) {
		t.Errorf("error %q does not name the memfd", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestFromReaderError(t *testing.T) {
	r, err := FromReader("x", io.MultiReader(strings.NewReader("partial"), failingReader{}))
	if err == nil {
		r.Close()
		t.Fatal("FromReader succeeded")
	}
	if !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("error %q does not carry the read error", err)
	}
}

func TestMapFdRefuses(t *testing.T) {
	unsealed := func(t *testing.T, seals int) int {
		fd, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		if _, err := unix.Write(fd, []byte("data")); err != nil {
			t.Fatal(err)
		}
		if seals != 0 {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
				t.Fatal(err)
			}
		}
		return fd
	}
	r := newRegion(t, []byte("data"))
	file, err := os.Create(filepath.Join(t.TempDir(), "plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()

	tests := []struct {
		name    string
		fd      int
		size    int64
		sealErr bool
		msg     string
	}{
		{"unsealed memfd", unsealed(t, 0), 4, true, "missing F_SEAL_SEAL|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE"},
		{"no write seal", unsealed(t, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL), 4, true, "missing F_SEAL_WRITE"},
		{"regular file", int(file.Fd()), 0, true, "not a memfd"},
		{"bad fd", 1 << 20, 4, false, "bad file descriptor"},
		{"size too small", int(r.File().Fd()), 3, false, "region holds 4 bytes, expected 3"},
		{"size too large", int(r.File().Fd()), 5, false, "region holds 4 bytes, expected 5"},
		{"negative size", int(r.File().Fd()), -1, false, "negative size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := MapFd(tt.fd, tt.size)
			if err == nil {
				m.Close()
				t.Fatal("MapFd succeeded")
			}
			if got := errors.Is(err, ErrNotSealed); got != tt.sealErr {
				t.Errorf("errors.Is(%v, ErrNotSealed) = %v, want %v", err, got, tt.sealErr)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q lacks %q", err, tt.msg)
			}
		})
	}
}

func TestMapFile(t *testing.T) {
	r := newRegion(t, []byte("via os.File"))
	f := os.NewFile(uintptr(mustDup(t, int(r.File().Fd()))), "state")
	m, err := Map(f, r.Size())
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if string(m.Bytes()) != "via os.File" {
		t.Errorf("Bytes() = %q", m.Bytes())
	}
}

func mustDup(t *testing.T, fd int) int {
	t.Helper()
	nfd, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	return nfd
}

func BenchmarkFromBytes(b *testing.B) {
	data := sampleData(1_000_000)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r, err := FromBytes("bench", data)
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

func BenchmarkFromFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "state.tbl")
	data := sampleData(1_000_000)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r, err := FromFile(path)
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

func BenchmarkMapFd(b *testing.B) {
	r, err := FromBytes("bench", sampleData(1_000_000))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	fd := int(r.File().Fd())
	for b.Loop() {
		m, err := MapFd(fd, r.Size())
		if err != nil {
			b.Fatal(err)
		}
		m.Close()
	}
}

// FromFile refuses what is not a regular file at once (a FIFO would block
// an ordinary open forever) and a file larger than the memory available.
func TestFromFileRefusesFIFOAndHuge(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := FromFile(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("FIFO: %v, want a refusal", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("FromFile of a FIFO hangs")
	}
	avail, ok := memAvailable()
	if !ok {
		t.Fatal("no MemAvailable in /proc/meminfo")
	}
	huge := filepath.Join(dir, "huge")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(avail + 1<<30)); err != nil { // sparse: costs nothing
		t.Fatal(err)
	}
	f.Close()
	t0 := time.Now()
	if _, err := FromFile(huge); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a %d-byte sparse file: %v, want ErrTooLarge", avail+1<<30, err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("the refusal took %v: it copied first", d)
	}
}

// FromFileProgress reports each 64 MiB chunk and the end, with the size.
func TestFromFileProgress(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 150 << 20 // sparse: reads as zeros
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var got []int64
	r, err := FromFileProgress(path, func(copied, total int64) {
		if total != size {
			t.Errorf("size %d, want %d", total, size)
		}
		got = append(got, copied)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := []int64{64 << 20, 128 << 20, size}
	if !slices.Equal(got, want) {
		t.Errorf("progress %v, want %v", got, want)
	}
	if r.Size() != size {
		t.Errorf("region of %d bytes, want %d", r.Size(), size)
	}
}
