package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/master"
)

func slotAt(requests float64, fast, all uint64) master.SlotStatus {
	return master.SlotStatus{Slot: 0, PID: 42, State: "ready", Uptime: 61, Memory: &master.Memory{RSS: 8 << 20, PSS: 3 << 20},
		HTTP: &master.SlotHTTP{Requests: requests, InFlight: 2, Duration: []master.HTTPBucket{{LE: "0.005", Count: fast}, {LE: "0.1", Count: all}, {LE: "+Inf", Count: all}}}}
}

func TestFrameRatesAndP99(t *testing.T) {
	prev := master.Status{PID: 1, Generation: 2, Slots: []master.SlotStatus{slotAt(1000, 1000, 1000)}}
	// 500 more requests in 2 s: 400 under 5 ms, 100 between 5 and 100 ms.
	cur := master.Status{PID: 1, Generation: 2, Version: "v2", Desired: 1, Upgrades: map[string]uint64{"success": 1, "rolled_back": 2},
		Slots: []master.SlotStatus{slotAt(1500, 1400, 1500)}}
	first := frameOf(time.Now(), prev, nil, 0)
	if s := first.Slots[0]; s.ReqPerSec != nil || s.P99 != nil || s.InFlight == nil {
		t.Errorf("first frame: %+v; want no rate or p99 yet, in flight known", s)
	}
	f := frameOf(time.Now(), cur, &prev, 2*time.Second)
	s := f.Slots[0]
	if s.ReqPerSec == nil || *s.ReqPerSec != 250 {
		t.Errorf("req/s = %v, want 250", s.ReqPerSec)
	}
	if s.P99 == nil || *s.P99 <= 0.005 || *s.P99 > 0.1 {
		t.Errorf("p99 = %v, want in the 5–100 ms bucket", s.P99)
	}
	text := strings.Join(f.lines(), "\n")
	for _, want := range []string{"generation 2", "version v2", "1 ok, 0 failed, 2 rolled back", "SLOT", "250", "8.0MiB", "q: quit"} {
		if !strings.Contains(text, want) {
			t.Errorf("screen lacks %q:\n%s", want, text)
		}
	}
}
