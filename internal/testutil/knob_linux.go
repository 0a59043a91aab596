//go:build linux

package testutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// KnobValue is a kernel setting's value as it would be written back: the
// file's content, or of a choice file ("always [never] …") the selected
// word.
func KnobValue(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if i, j := strings.IndexByte(v, '['), strings.IndexByte(v, ']'); i >= 0 && j > i {
		v = v[i+1 : j]
	}
	return v, nil
}

// knobs serialises the tests that change kernel settings across the test
// processes of one `go test` run (packages run in parallel): the first
// SetKnob of a test takes an exclusive lock on a file, released when the
// test's settings have been put back.
var knobs struct {
	mu   sync.Mutex
	f    *os.File
	refs int
}

func lockKnobs(t testing.TB) {
	t.Helper()
	knobs.mu.Lock()
	defer knobs.mu.Unlock()
	if knobs.refs == 0 {
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "preforkd-test-knobs.lock"), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatalf("knob lock: %v", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			t.Fatalf("knob lock: %v", err)
		}
		knobs.f = f
	}
	knobs.refs++
	t.Cleanup(func() { // after the Cleanups that put the settings back (LIFO)
		knobs.mu.Lock()
		defer knobs.mu.Unlock()
		if knobs.refs--; knobs.refs == 0 {
			knobs.f.Close() // releases the lock
			knobs.f = nil
		}
	})
}

// SetKnob writes value to a kernel setting (a /proc/sys or /sys file) for
// the rest of the test and puts the previous value back when it ends, also
// on failure. A choice file ("always [never] …") is put back to its
// selected word. Tests that change settings run one at a time, also across
// packages (lockKnobs). It skips the test, saying why, when not root or
// when the file cannot be read or written (CI runs as root).
func SetKnob(t testing.TB, path, value string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to write %s (CI runs as root)", path)
	}
	if _, err := KnobValue(path); err != nil {
		t.Skipf("cannot read %s: %v", path, err)
	}
	lockKnobs(t)
	old, err := KnobValue(path) // as it is now ours
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) {
			t.Skipf("cannot write %s: %v", path, err)
		}
		t.Fatalf("write %q to %s: %v", value, path, err)
	}
	t.Logf("%s: %s → %s", path, old, value)
	t.Cleanup(func() {
		if err := os.WriteFile(path, []byte(old), 0); err != nil {
			t.Errorf("put %s back to %q: %v", path, old, err)
		}
	})
}
