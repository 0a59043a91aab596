//go:build linux

package master

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// spareHarness is a supervisor of 2 slots with one spare, its first
// workers ready and its spare waiting.
func spareHarness(t *testing.T, cfg superConfig) (*harness, int) {
	t.Helper()
	cfg.desired, cfg.spares = 2, 1
	h := newHarness(t, cfg)
	h.waitFor("2 starts", func() bool { return len(h.f.startsCopy()) == 2 })
	if len(h.status().Spares) != 0 {
		t.Fatal("a spare started before the first workers were ready")
	}
	h.readyAll()
	h.settle()
	if len(h.status().Spares) != 0 {
		t.Fatal("a spare started before the master was ready (enableSpares)")
	}
	h.s.do(h.s.enableSpares)
	h.waitFor("the spare", func() bool { return len(h.status().Spares) == 1 })
	sp := h.status().Spares[0]
	if st := h.f.startsCopy(); st[len(st)-1].slot != -1 || sp.State != "starting" {
		t.Fatalf("spare %+v, last start %+v: want slot -1, starting", sp, st[len(st)-1])
	}
	h.note(sp.PID, noteEvent{spare: true})
	h.waitFor("the spare to wait", func() bool { s := h.status().Spares; return len(s) == 1 && s[0].State == "waiting" })
	return h, sp.PID
}

// A worker that dies after its stable period gets the spare (promoted
// into its slot, no process start for the slot), and a new spare starts
// behind it; the promoted spare is the slot's worker once ready.
func TestSparePromotedOnLateDeath(t *testing.T) {
	h, spare := spareHarness(t, superConfig{})
	victim := h.status().Slots[1].PID
	time.Sleep(60 * time.Millisecond) // > stable (50ms)
	starts := len(h.f.startsCopy())
	h.f.exit(victim, 1)
	h.waitFor("the promotion", func() bool { return h.status().Slots[1].PID == spare })
	if p := h.f.promotions; len(p) != 1 || p[0] != [2]int{spare, 1} {
		t.Fatalf("promotions %v, want [[%d 1]]", p, spare)
	}
	st := h.status()
	if st.Slots[1].State != "starting" || st.SparesPromoted != 1 {
		t.Fatalf("slot 1 %+v, promoted %d: want the spare starting (its app), 1", st.Slots[1], st.SparesPromoted)
	}
	h.waitFor("a new spare", func() bool { s := h.status().Spares; return len(s) == 1 && s[0].PID != spare })
	if got := h.f.startsCopy()[starts:]; len(got) != 1 || got[0].slot != -1 {
		t.Fatalf("starts after the death %+v: want one, a spare", got)
	}
	h.note(spare, noteEvent{ready: true})
	h.waitFor("the promoted spare ready", func() bool { return h.status().Slots[1].State == "ready" })
}

// An early death (before the stable period) backs off as before: the
// spare is kept for a worker that served well.
func TestSpareNotUsedForEarlyDeath(t *testing.T) {
	h, spare := spareHarness(t, superConfig{stable: time.Hour})
	victim := h.status().Slots[0].PID
	h.f.exit(victim, 1)
	h.waitFor("the backoff", func() bool { return h.status().Slots[0].State == "backoff" })
	h.waitFor("the restart", func() bool { p := h.status().Slots[0].PID; return p != 0 && p != victim })
	if st := h.status(); st.Slots[0].PID == spare || len(h.f.promotions) != 0 || len(st.Spares) != 1 || st.Spares[0].PID != spare {
		t.Fatalf("early death: slot 0 pid %d, promotions %v, spares %+v: want a fresh start and the spare kept", st.Slots[0].PID, h.f.promotions, st.Spares)
	}
}

// A spare that dies before it waits is replaced after a growing backoff,
// not in a loop; one that waited resets it.
func TestSpareCrashBacksOff(t *testing.T) {
	cfg := superConfig{desired: 1, spares: 1, backoffMin: 40 * time.Millisecond, backoffMax: 40 * time.Millisecond}
	h := newHarness(t, cfg)
	h.waitFor("start", func() bool { return len(h.f.startsCopy()) == 1 })
	h.readyAll()
	h.s.do(h.s.enableSpares)
	var spares []int
	for i := 0; i < 3; i++ {
		h.waitFor("a spare", func() bool { s := h.status().Spares; return len(s) == 1 && (i == 0 || s[0].PID != spares[i-1]) })
		pid := h.status().Spares[0].PID
		spares = append(spares, pid)
		h.f.exit(pid, 2)
		h.waitFor("its exit", func() bool { return len(h.status().Spares) == 0 })
	}
	// 3 spares died; between each death and the next start the backoff
	// (≥ 40ms × jitter ≥ 0.5) elapsed.
	st := h.f.startsCopy()
	for i := 2; i < len(st); i++ {
		if gap := st[i].at.Sub(st[i-1].at); gap < 15*time.Millisecond {
			t.Errorf("spare %d started %v after the previous one: no backoff", i, gap)
		}
	}
	if h.status().StartFailures != 0 {
		t.Errorf("start failures %d", h.status().StartFailures)
	}
}

// A stop ends the spares with the workers.
func TestSpareStoppedWithMaster(t *testing.T) {
	h, spare := spareHarness(t, superConfig{})
	h.s.do(func() { h.s.stop(true) })
	h.waitFor("every worker gone", func() bool { return isClosed(h.s.done) })
	if sigs := h.f.sigsTo(spare); len(sigs) == 0 {
		t.Fatal("the spare got no signal at the stop")
	}
}

// A spare killed at -start-timeout (it never said it waits) is replaced
// after a backoff, not left missing.
func TestSpareKilledAtStartTimeoutReplaced(t *testing.T) {
	h := newHarness(t, superConfig{desired: 1, spares: 1, startTimeout: 100 * time.Millisecond})
	h.waitFor("start", func() bool { return len(h.f.startsCopy()) == 1 })
	h.readyAll()
	h.s.do(h.s.enableSpares)
	h.waitFor("a spare", func() bool { return len(h.status().Spares) == 1 })
	first := h.status().Spares[0].PID
	h.waitFor("its kill at the start timeout", func() bool {
		sigs := h.f.sigsTo(first)
		return len(sigs) > 0 && sigs[0] == unix.SIGKILL
	})
	h.waitFor("another spare", func() bool { s := h.status().Spares; return len(s) == 1 && s[0].PID != first })
}
