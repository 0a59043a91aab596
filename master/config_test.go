package master

import (
	"errors"
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
