package master

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/listener"
)

func TestValidateBounds(t *testing.T) {
	long := "/tmp/" + strings.Repeat("x", 110) + ".sock"
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"heartbeat too short", Config{Heartbeat: time.Millisecond}, "-heartbeat 1ms: below 100ms"},
		{"control path too long", Config{Control: long}, "longer than a unix socket path may be"},
		{"listen path is the control path", Config{Control: "/run/app/ctl.sock",
			Listen: []listener.Spec{{Name: "api", Network: "unix", Address: "/run/app/ctl.sock"}}}, "the same path as -control"},
		{"backoff max below min", Config{BackoffMin: time.Second, BackoffMax: time.Millisecond}, "-backoff-max"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an ErrConfig naming %q", tc.name, err, tc.want)
		}
	}
	if err := (Config{Heartbeat: MinHeartbeat, Control: "off"}).Validate(); err != nil {
		t.Errorf("the shortest heartbeat: %v", err)
	}
}

func TestDefaultControlPath(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	if got, err := DefaultControlPath("svc"); err != nil || got != filepath.Join(xdg, "svc.sock") {
		t.Errorf("with XDG_RUNTIME_DIR: %q %v", got, err)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if os.Geteuid() == 0 {
		name := fmt.Sprintf("preforkd-test-%d", os.Getpid())
		t.Cleanup(func() { os.RemoveAll(filepath.Join("/run", name)) })
		got, err := DefaultControlPath(name)
		if err != nil || got != filepath.Join("/run", name, name+".sock") {
			t.Errorf("root: %q %v", got, err)
		}
		if fi, err := os.Stat(filepath.Dir(got)); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("the directory: %v %v, want mode 0700", fi.Mode(), err)
		}
	}
	for _, bad := range []string{"", "a/b"} {
		if _, err := DefaultControlPath(bad); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}

// A directory that others can write in, or that belongs to someone else,
// is refused: a local user must not be able to plant or swap the socket.
func TestPrivateDirRefusesOthers(t *testing.T) {
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	if err := privateDir(open); err == nil || !strings.Contains(err.Error(), "lets others write") {
		t.Errorf("a 0777 directory: %v", err)
	}
	if os.Geteuid() == 0 {
		theirs := filepath.Join(t.TempDir(), "theirs")
		if err := os.Mkdir(theirs, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := privateDir(theirs); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
			t.Errorf("another user's directory: %v", err)
		}
	}
	mine := filepath.Join(t.TempDir(), "mine")
	if err := privateDir(mine); err != nil {
		t.Errorf("a new directory: %v", err)
	}
}
