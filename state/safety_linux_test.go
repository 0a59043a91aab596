//go:build linux

package state

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// attack tries every way a worker holding the region's descriptor fd and
// its read-only mapping b could change the region, and reports one line
// "operation: result" per attempt, where result is the errno name or "ok".
// None may succeed. It is run both in the test process and in a helper
// process that inherited the descriptor, as a worker does.
func attack(fd int, b []byte) []string {
	var out []string
	report := func(op string, err error) {
		res := "ok"
		if err != nil {
			res = err.Error()
			var errno unix.Errno
			if errors.As(err, &errno) {
				res = unix.ErrnoName(errno)
			}
		}
		out = append(out, op+": "+res)
	}
	// Sizes on the file's own page boundaries (st_blksize: 4 KiB, or a
	// hugetlb region's 2 MiB), so that what refuses them is the seals and
	// not hugetlbfs's rule that a size is a whole number of huge pages.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return []string{"fstat: " + err.Error()}
	}
	size, page := st.Size, int64(st.Blksize)

	report("mprotect PROT_READ|PROT_WRITE", unix.Mprotect(b, unix.PROT_READ|unix.PROT_WRITE))
	wb, err := unix.Mmap(fd, 0, len(b), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err == nil {
		unix.Munmap(wb)
	}
	report("mmap PROT_WRITE MAP_SHARED", err)
	_, err = unix.Pwrite(fd, []byte("X"), 0)
	report("pwrite", err)
	_, err = unix.Write(fd, []byte("X"))
	report("write", err)
	report("ftruncate shrink", unix.Ftruncate(fd, size/2&^(page-1)))
	report("ftruncate grow", unix.Ftruncate(fd, size+page))
	report("fallocate grow", unix.Fallocate(fd, 0, 0, size+page))
	report("fallocate punch hole", unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, size))
	_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_FUTURE_WRITE)
	report("F_ADD_SEALS", err)

	// A fresh writable open of the same memfd.
	rw, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err == nil {
		_, err = unix.Pwrite(rw, []byte("X"), 0)
		unix.Close(rw)
	}
	report("reopen O_RDWR + pwrite", err)

	// A debugger-style forced write into the mapping.
	mem, err := unix.Open("/proc/self/mem", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err == nil {
		_, err = unix.Pwrite(mem, []byte("X"), int64(uintptr(unsafe.Pointer(&b[0]))))
		unix.Close(mem)
	}
	report("pwrite /proc/self/mem", err)
	return out
}

// attackWant is what attack must report on Linux ≥ 6.7 (earlier kernels
// let mprotect succeed on an F_SEAL_WRITE mapping… and are not supported),
// for a region in 4 KiB pages or THP (a shmem memfd either way).
var attackWant = []string{
	"mprotect PROT_READ|PROT_WRITE: EACCES",
	"mmap PROT_WRITE MAP_SHARED: EPERM",
	"pwrite: EPERM",
	"write: EPERM",
	"ftruncate shrink: EPERM",
	"ftruncate grow: EPERM",
	"fallocate grow: EPERM",
	"fallocate punch hole: EPERM",
	"F_ADD_SEALS: EPERM",
	"reopen O_RDWR + pwrite: EPERM",
	"pwrite /proc/self/mem: EIO",
}

// attackWantHugetlb is attackWant for a hugetlb region: the same refusals,
// except that hugetlbfs has no write(2) at all, sealed or not (EINVAL).
var attackWantHugetlb = []string{
	"mprotect PROT_READ|PROT_WRITE: EACCES",
	"mmap PROT_WRITE MAP_SHARED: EPERM",
	"pwrite: EINVAL",
	"write: EINVAL",
	"ftruncate shrink: EPERM",
	"ftruncate grow: EPERM",
	"fallocate grow: EPERM",
	"fallocate punch hole: EPERM",
	"F_ADD_SEALS: EPERM",
	"reopen O_RDWR + pwrite: EINVAL",
	"pwrite /proc/self/mem: EIO",
}

// attackWantFor is what attack must report for a region in mode.
func attackWantFor(mode string) []string {
	if mode == PagesHugeTLB {
		return attackWantHugetlb
	}
	return attackWant
}

// runWorker runs the test binary in helper role with the region as fd 3,
// waits for it (at most a minute) and returns its stdout, its stderr and
// its exit state.
func runWorker(t *testing.T, role string, r *Region) (stdout, stderr string, ws syscall.WaitStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		helperEnv+"="+role,
		sizeEnv+"="+strconv.FormatInt(r.Size(), 10),
		"GOTRACEBACK=single", // the default, whatever the parent has
	)
	cmd.ExtraFiles = []*os.File{r.File()} // fd 3 in the child
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("run helper %q: %v", role, err)
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		t.Fatalf("helper %q: ProcessState.Sys() is %T", role, cmd.ProcessState.Sys())
	}
	t.Logf("helper %q: %v\nstdout:\n%s\nstderr (first 600 bytes):\n%.600s", role, cmd.ProcessState, out.String(), errOut.String())
	return out.String(), errOut.String(), ws
}

// faultAddr returns the address the helper printed before its write.
func faultAddr(t *testing.T, stdout string) string {
	t.Helper()
	line, _, _ := strings.Cut(stdout, "\n")
	addr, ok := strings.CutPrefix(line, "addr=0x")
	if !ok {
		t.Fatalf("helper did not print its mapping address; stdout %q", stdout)
	}
	return "0x" + addr
}

// TestWriteFaults: a write through a worker's mapping kills the worker and
// leaves the region unchanged.
func TestWriteFaults(t *testing.T) {
	data := sampleData(100)
	forEachMode(t, int64(len(data)), func(t *testing.T, _ string, build func([]byte) *Region) {
		testWriteFaults(t, build(data), data)
	})
}

// testWriteFaults is TestWriteFaults over one region holding data.
func testWriteFaults(t *testing.T, r *Region, data []byte) {
	t.Run("go runtime", func(t *testing.T) {
		// What a Go worker does by default: the runtime catches the
		// SIGSEGV, prints "unexpected fault address", throws "fault" and
		// exits with status 2. code=0x2 is SEGV_ACCERR: the page is mapped
		// but the access is not allowed. (GOTRACEBACK=crash would not give
		// a SIGSEGV death either: the runtime then dies of SIGABRT.)
		stdout, stderr, ws := runWorker(t, "write", r)
		addr := faultAddr(t, stdout)
		if !ws.Exited() || ws.ExitStatus() != 2 {
			t.Errorf("helper ended with %#x (exited %v, status %d, signaled %v), want exit status 2",
				uint32(ws), ws.Exited(), ws.ExitStatus(), ws.Signaled())
		}
		for _, want := range []string{
			"unexpected fault address " + addr + "\n",
			"fatal error: fault\n",
			"[signal SIGSEGV: segmentation violation code=0x2 addr=" + addr + " ",
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q", want)
			}
		}
		if strings.Contains(stdout, "write succeeded") {
			t.Error("the write through the read-only mapping succeeded")
		}
	})

	t.Run("kernel default action", func(t *testing.T) {
		// With SIGSEGV's disposition back at SIG_DFL the kernel itself
		// kills the worker with SIGSEGV (no core: PR_SET_DUMPABLE is 0).
		stdout, _, ws := runWorker(t, "write-sigdfl", r)
		faultAddr(t, stdout)
		if !ws.Signaled() || ws.Signal() != syscall.SIGSEGV {
			t.Errorf("helper ended with %#x (exited %v, status %d, signaled %v, signal %v), want death by SIGSEGV",
				uint32(ws), ws.Exited(), ws.ExitStatus(), ws.Signaled(), ws.Signal())
		}
		if strings.Contains(stdout, "write succeeded") {
			t.Error("the write through the read-only mapping succeeded")
		}
	})

	checkUnchanged(t, r, data)
}

// TestCannotMakeWritable: in a worker that inherited the descriptor, every
// way to write the region or make the mapping writable fails.
func TestCannotMakeWritable(t *testing.T) {
	data := sampleData(100)
	forEachMode(t, int64(len(data)), func(t *testing.T, mode string, build func([]byte) *Region) {
		r := build(data)
		want := attackWantFor(mode)
		t.Run("in process", func(t *testing.T) {
			m, err := r.Map()
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			compareLines(t, attack(int(r.File().Fd()), m.Bytes()), want)
		})
		t.Run("worker process", func(t *testing.T) {
			stdout, _, ws := runWorker(t, "attack", r)
			if !ws.Exited() || ws.ExitStatus() != 0 {
				t.Fatalf("helper ended with %#x, want exit status 0", uint32(ws))
			}
			compareLines(t, strings.Split(strings.TrimSuffix(stdout, "\n"), "\n"), want)
		})
		checkUnchanged(t, r, data)
	})
}

// TestPrivateMappingDoesNotLeak: a private writable mapping is allowed (it
// is copy-on-write), and what is written there stays in that mapping.
func TestPrivateMappingDoesNotLeak(t *testing.T) {
	data := sampleData(100)
	forEachMode(t, int64(len(data)), func(t *testing.T, _ string, build func([]byte) *Region) {
		r := build(data)
		// The whole file: a hugetlb mapping is unmapped in whole huge pages.
		priv, err := unix.Mmap(int(r.File().Fd()), 0, int(sizeOf(t, r)), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
		if err != nil {
			t.Fatalf("private writable mmap: %v", err)
		}
		defer unix.Munmap(priv)
		copy(priv, "scribble")
		checkUnchanged(t, r, data)
	})
}

func compareLines(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d results, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("got %q, want %q", got[i], want[i])
		}
	}
}

// checkUnchanged maps r anew and compares it with want.
func checkUnchanged(t *testing.T, r *Region, want []byte) {
	t.Helper()
	m, err := r.Map()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !bytes.Equal(m.Bytes(), want) {
		t.Error("the region's content changed")
	}
	if got, want := sizeOf(t, r), int64(len(want)); got != want && (r.PageMode() != PagesHugeTLB || got != roundUp(want, hugeTestPageBytes)) {
		t.Errorf("the region's file holds %d bytes, want %d (%s)", got, want, r.PageMode())
	}
}

func sizeOf(t *testing.T, r *Region) int64 {
	t.Helper()
	fi, err := r.File().Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// newRegion returns a region holding data, closed at the end of the test.
func newRegion(t *testing.T, data []byte) *Region {
	t.Helper()
	r, err := FromBytes(t.Name(), data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
