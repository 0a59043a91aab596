//go:build linux

package integration

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"

	"golang.org/x/sys/unix"
)

// writeRandomFile writes size random bytes (pages that no other file shares).
func writeRandomFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		rand.Read(buf)
		n := min(int64(len(buf)), left)
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
}

// touchAllWorkers asks /state on fresh connections until every worker pid
// in pids has answered (each one then has read every page of the region),
// and returns the answers by pid.
func touchAllWorkers(t *testing.T, m *Master, pids []int) map[int]string {
	t.Helper()
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	got := map[int]string{}
	c := fresh()
	deadline := time.Now().Add(60 * time.Second)
	for len(got) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d workers answered /state", len(got), len(want))
		}
		code, body, err := get(c, m.URL("/state"))
		if err != nil || code != 200 {
			t.Fatalf("/state: %d %v", code, err)
		}
		d, _ := parseDemo(body)
		if want[d.PID] {
			_, rest, _ := strings.Cut(body, "\n")
			got[d.PID] = strings.TrimSpace(rest)
		}
	}
	return got
}

type memFigures struct {
	pss, pssShmem []uint64
	totalPSS      uint64
}

func workerMemory(t *testing.T, m *Master, n int) memFigures {
	t.Helper()
	st := m.WaitWorkers(n, 30*time.Second)
	touchAllWorkers(t, m, st.ReadyPIDs())
	st = m.Status()
	var f memFigures
	for _, s := range st.Slots {
		if s.Memory == nil {
			t.Fatalf("slot %d: no memory figures in status", s.Slot)
		}
		f.pss = append(f.pss, s.Memory.PSS)
		f.pssShmem = append(f.pssShmem, s.Memory.PSSShmem)
		f.totalPSS += s.Memory.PSS
	}
	return f
}

const mib = 1 << 20

// 4 workers over a 256 MiB state: each worker's Pss_Shmem is 64 MiB ±15%,
// and the workers' total PSS is at most the state size plus the same
// workers' total PSS over a 1 MiB state, +10%.
func TestStateIsShared(t *testing.T) {
	dir := t.TempDir()
	small, big := filepath.Join(dir, "small.bin"), filepath.Join(dir, "big.bin")
	writeRandomFile(t, small, 1*mib)
	writeRandomFile(t, big, 256*mib)

	ms := startMaster(t, Opts{Workers: 4, Args: []string{"-state", small}})
	base := workerMemory(t, ms, 4)
	ms.Signal(unix.SIGTERM)
	ms.Wait(20 * time.Second)

	mb := startMaster(t, Opts{Workers: 4, Args: []string{"-state", big}})
	f := workerMemory(t, mb, 4)
	t.Logf("1 MiB state: total PSS %.1f MiB; 256 MiB state: total PSS %.1f MiB, Pss_Shmem per worker %v MiB",
		float64(base.totalPSS)/mib, float64(f.totalPSS)/mib, inMiB(f.pssShmem))
	for i, v := range f.pssShmem {
		if float64(v) < 64*mib*0.85 || float64(v) > 64*mib*1.15 {
			t.Errorf("worker %d: Pss_Shmem %.1f MiB, want 64 MiB ±15%%", i, float64(v)/mib)
		}
	}
	limit := (256*mib + float64(base.totalPSS)) * 1.10
	if float64(f.totalPSS) > limit {
		t.Errorf("total PSS %.1f MiB over 256 MiB of state, want ≤ %.1f MiB (state + workers over 1 MiB, +10%%)", float64(f.totalPSS)/mib, limit/mib)
	}
}

func inMiB(v []uint64) []string {
	var out []string
	for _, x := range v {
		out = append(out, fmt.Sprintf("%.1f", float64(x)/mib))
	}
	return out
}

// respawnTimes kills slot 0's worker n times (each having served past the
// stable period) and returns the kill-to-ready times.
func respawnTimes(t *testing.T, m *Master, n int) []time.Duration {
	t.Helper()
	var out []time.Duration
	for i := 0; i < n; i++ {
		st := m.WaitWorkers(2, 30*time.Second)
		victim := st.Slots[0].PID
		time.Sleep(300 * time.Millisecond)
		began := time.Now()
		unix.Kill(victim, unix.SIGKILL)
		testutil.WaitFor(t, 30*time.Second, "respawn", func() bool {
			s, err := m.status()
			return err == nil && s.Slots[0].PID != victim && s.Slots[0].State == "ready"
		})
		out = append(out, time.Since(began))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// A worker's start does not grow with the state: respawn-to-serving over
// 256 MiB is within 1.5× (+50 ms) of the time over 1 MiB.
func TestStartCostFlatInStateSize(t *testing.T) {
	dir := t.TempDir()
	small, big := filepath.Join(dir, "small.bin"), filepath.Join(dir, "big.bin")
	writeRandomFile(t, small, 1*mib)
	writeRandomFile(t, big, 256*mib)
	args := []string{"-stable-period", "200ms"}
	ms := startMaster(t, Opts{Workers: 2, Args: append(args, "-state", small)})
	mb := startMaster(t, Opts{Workers: 2, Args: append(args, "-state", big)})
	var s1, s256 []time.Duration
	for round := 0; round < 3; round++ { // alternate, so that noise hits both
		s1 = append(s1, respawnTimes(t, ms, 2)...)
		s256 = append(s256, respawnTimes(t, mb, 2)...)
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	m1, m256 := med(s1), med(s256)
	t.Logf("respawn-to-serving median: 1 MiB state %v, 256 MiB state %v (ratio %.2f)", m1, m256, float64(m256)/float64(m1))
	if m256 > m1*3/2+50*time.Millisecond {
		t.Errorf("respawn over 256 MiB took %v, over 1 MiB %v: want within 1.5× + 50ms", m256, m1)
	}
}

// A master over a 1 GiB state starts, and /state checksums agree across
// all workers.
func TestGiBStateChecksumsAgree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gib.bin")
	writeRandomFile(t, path, 1024*mib)
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-state", path, "-start-timeout", "2m"}})
	st := m.WaitWorkers(2, 60*time.Second)
	answers := touchAllWorkers(t, m, st.ReadyPIDs())
	var first string
	for pid, a := range answers {
		t.Logf("worker %d: %s", pid, a)
		if !strings.HasPrefix(a, fmt.Sprintf("size=%d ", 1024*mib)) {
			t.Errorf("worker %d: %q, want size=%d", pid, a, 1024*mib)
		}
		if first == "" {
			first = a
		} else if a != first {
			t.Errorf("workers disagree: %q vs %q", a, first)
		}
	}
	os.Remove(path)
}

// The demo's table: /kv serves values out of the box, 404 for a missing
// key; a -state file that is not a table still answers /state.
func TestDemoKV(t *testing.T) {
	m := startMaster(t, Opts{Workers: 1})
	code, body, err := get(fresh(), m.URL("/kv/key-000042"))
	if err != nil || code != 200 {
		t.Fatalf("/kv/key-000042: %d %v", code, err)
	}
	if _, rest, _ := strings.Cut(body, "\n"); !strings.HasPrefix(rest, "value-000042-") {
		t.Errorf("/kv/key-000042 answered %q", body)
	}
	if code, _, _ := get(fresh(), m.URL("/kv/no-such-key")); code != 404 {
		t.Errorf("missing key: %d, want 404", code)
	}
	if code, body, _ := get(fresh(), m.URL("/state")); code != 200 || !strings.Contains(body, "size=") {
		t.Errorf("/state: %d %q", code, body)
	}
	path := filepath.Join(t.TempDir(), "plain.bin")
	os.WriteFile(path, []byte("just some bytes, not a table\n"), 0o644)
	m2 := startMaster(t, Opts{Workers: 1, Args: []string{"-state", path}})
	if code, _, _ := get(fresh(), m2.URL("/kv/key-000042")); code != 404 {
		t.Errorf("/kv over a non-table state: %d, want 404", code)
	}
	if code, body, _ := get(fresh(), m2.URL("/state")); code != 200 || !strings.Contains(body, "size=29 ") {
		t.Errorf("/state over a non-table state: %d %q", code, body)
	}
}

// preforkd state build turns TSV into a table that the demo serves; a bad
// line is reported with its number and nothing is written.
func TestStateBuildCLI(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "data.tsv"), filepath.Join(dir, "table.bin")
	os.WriteFile(in, []byte("apple\tred\nbanana\tyellow\n\nkiwi\tgreen\n"), 0o644)
	msg, code := runPreforkd(t, 10*time.Second, "state", "build", "-in", in, "-out", out)
	if code != 0 || !strings.Contains(msg, "3 keys") {
		t.Fatalf("state build: exit %d: %s", code, msg)
	}
	m := startMaster(t, Opts{Workers: 1, Args: []string{"-state", out}})
	if code, body, _ := get(fresh(), m.URL("/kv/banana")); code != 200 || !strings.HasSuffix(body, "\nyellow\n") {
		t.Errorf("/kv/banana: %d %q", code, body)
	}
	bad := filepath.Join(dir, "bad.tsv")
	os.WriteFile(bad, []byte("a\t1\nb\t2\nno tab here\n"), 0o644)
	out2 := filepath.Join(dir, "bad.bin")
	msg, code = runPreforkd(t, 10*time.Second, "state", "build", "-in", bad, "-out", out2)
	if code == 0 || !strings.Contains(msg, "line 3") {
		t.Errorf("bad TSV: exit %d, %q; want non-zero naming line 3", code, msg)
	}
	if _, err := os.Stat(out2); err == nil {
		t.Errorf("a failed build left %s behind", out2)
	}
}
