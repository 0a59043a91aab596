//go:build linux

package integration

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// memfdInode is the inode of the state region a worker maps (its
// "/memfd:" line in /proc/<pid>/maps): the same inode is the same region.
func memfdInode(t *testing.T, pid int) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 6 && isRegion(fs[5]) {
			return fs[4]
		}
	}
	t.Fatalf("worker %d maps no memfd", pid)
	return ""
}

// regionOf is the one memfd inode and /state answer of the current
// workers (all of them must agree).
func regionOf(t *testing.T, m *Master, n int) (inode, answer string) {
	t.Helper()
	st := m.WaitWorkers(n, 30*time.Second)
	for pid, a := range touchAllWorkers(t, m, st.ReadyPIDs()) {
		in := memfdInode(t, pid)
		if inode != "" && (in != inode || a != answer) {
			t.Fatalf("workers disagree: inode %s %q vs %s %q", in, a, inode, answer)
		}
		inode, answer = in, a
	}
	return inode, answer
}

// An upgrade whose -state file did not change takes the running region
// over (the new workers map the very memfd the old ones did, and no copy
// is made); one whose file changed builds a new region, and the new
// workers serve the new bytes — also when the file was rewritten in place
// with its old modification time put back.
func TestStateHandedOverWhenUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.bin")
	writeRandomFile(t, path, 3*mib)
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-state", path}})
	inode1, answer1 := regionOf(t, m, 2)

	m.Upgrade("v2", 2)
	if l := logLines(m.Log.String(), "took over the previous master's state region"); len(l) != 1 {
		t.Fatalf("after an upgrade with the file unchanged: %d take-over lines, want 1", len(l))
	}
	inode2, answer2 := regionOf(t, m, 2)
	if inode2 != inode1 || answer2 != answer1 {
		t.Fatalf("unchanged file: region %s %q, want the old one, %s %q", inode2, answer2, inode1, answer1)
	}
	if l := logLines(m.Log.String(), "master ready", "generation=2", "state_reused=true"); len(l) != 1 {
		t.Errorf("the new master's ready line does not say the state was reused: %q", l)
	}

	// Rewrite in place, same size, then put the old times back.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3*mib)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	m.Upgrade("v1", 2)
	if l := logLines(m.Log.String(), "the shared state changed; building it again"); len(l) != 1 {
		t.Fatalf("after the file changed: %d rebuild lines, want 1", len(l))
	}
	inode3, answer3 := regionOf(t, m, 2)
	if inode3 == inode2 || answer3 == answer2 {
		t.Fatalf("changed file: region %s %q, the old one's was %s %q", inode3, answer3, inode2, answer2)
	}
	if !strings.Contains(answer3, fmt.Sprintf("size=%d ", 3*mib)) {
		t.Fatalf("changed file: /state says %q", answer3)
	}

	// And it is handed over again from the rebuilt one.
	m.Upgrade("v2", 2)
	if inode4, answer4 := regionOf(t, m, 2); inode4 != inode3 || answer4 != answer3 {
		t.Fatalf("second hand-over: region %s %q, want %s %q", inode4, answer4, inode3, answer3)
	}
	// Only the current region is held: the rebuilt master's predecessor
	// region was closed when it became ready (tableflip closes what a
	// successor did not take), so the master maps or holds one memfd.
	if n := memfds(t, m.PID()); n != 1 {
		t.Errorf("the master holds %d memfds, want 1 (the current region)", n)
	}
}

// The demo's generated table has a key (server.WithStateKey): an upgrade
// to a build with the same key does not generate it again.
func TestDemoStateHandedOver(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2})
	m.Upgrade("v2", 2)
	if l := logLines(m.Log.String(), "took over the previous master's state region"); len(l) != 1 {
		t.Fatalf("%d take-over lines, want 1", len(l))
	}
	code, body, err := get(fresh(), m.URL("/kv/key-000042"))
	if err != nil || code != 200 || !strings.Contains(body, "value-000042-") {
		t.Fatalf("/kv after the hand-over: %d %q %v", code, body, err)
	}
}

// isRegion tells a state region's memfd (named after the -state file, or
// NAME-state) from the accept balance's board.
func isRegion(name string) bool {
	return strings.HasPrefix(name, "/memfd:") && !strings.HasPrefix(name, "/memfd:preforkd-balance")
}

// memfds counts the state regions pid holds (distinct memfd inodes: the
// master keeps a second descriptor of its region for tableflip).
func memfds(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[uint64]bool{}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if l, err := os.Readlink(p); err == nil && isRegion(l) {
			if fi, err := os.Stat(p); err == nil {
				inodes[fi.Sys().(*syscall.Stat_t).Ino] = true
			}
		}
	}
	return len(inodes)
}
