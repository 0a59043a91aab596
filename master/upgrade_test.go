//go:build linux

package master

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeUpgrader plays tableflip: Upgrade blocks until the test answers on
// outcome (or Stop is called, which makes it fail as tableflip's does).
type fakeUpgrader struct {
	outcome chan error
	stopped chan struct{}
	once    sync.Once
	mu      sync.Mutex
	calls   int
}

func newFakeUpgrader() *fakeUpgrader {
	return &fakeUpgrader{outcome: make(chan error), stopped: make(chan struct{})}
}

func (f *fakeUpgrader) Upgrade() error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	select {
	case err := <-f.outcome:
		return err
	case <-f.stopped:
		return errors.New("terminating")
	}
}
func (f *fakeUpgrader) Ready() error                        { return nil }
func (f *fakeUpgrader) HasParent() bool                     { return false }
func (f *fakeUpgrader) WaitForParent(context.Context) error { return nil }
func (f *fakeUpgrader) Stop() {
	f.once.Do(func() {
		if f.stopped != nil {
			close(f.stopped)
		}
	})
}

// fakeSuccessor records offers and announces a pid.
type fakeSuccessor struct {
	mu       sync.Mutex
	offers   []linkMsg
	pid      int
	rollback *linkMsg // what rolledBack returns, if set
}

func (f *fakeSuccessor) rolledBack(time.Duration) (linkMsg, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rollback == nil {
		return linkMsg{}, false
	}
	return *f.rollback, true
}

func (f *fakeSuccessor) offer(m linkMsg) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.offers = append(f.offers, m)
	return nil
}

func (f *fakeSuccessor) successorPid(time.Duration) (int, error) {
	if f.pid == 0 {
		return 0, errors.New("the new master did not say its pid")
	}
	return f.pid, nil
}

// fakeNotifier records what would go to systemd.
type fakeNotifier struct {
	mu   sync.Mutex
	sent []string
}

func (f *fakeNotifier) Send(lines ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, strings.Join(lines, " "))
	return nil
}

func (f *fakeNotifier) all() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.sent, "\n")
}

type upgradeHarness struct {
	u    *upgrade
	upg  *fakeUpgrader
	next *fakeSuccessor
	sd   *fakeNotifier
}

func newUpgradeHarness(t *testing.T) *upgradeHarness {
	h := &upgradeHarness{upg: newFakeUpgrader(), next: &fakeSuccessor{pid: 4242}, sd: &fakeNotifier{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h.u = newUpgrade(h.upg, h.next, h.sd, log, 7, map[string]uint64{"success": 6}, "")
	t.Cleanup(func() { h.upg.Stop(); h.u.close() })
	return h
}

var openGate = gate{ready: true, parentGone: true}

func offerOf(workers int) func() linkMsg {
	return func() linkMsg { return linkMsg{Workers: workers} }
}

// result waits for the running Upgrade's outcome, as the master's loop does.
func (h *upgradeHarness) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.u.results:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Upgrade did not return")
		return nil
	}
}

func TestUpgradeReady(t *testing.T) {
	h := newUpgradeHarness(t)
	reply := make(chan error, 1)
	h.u.begin(openGate, offerOf(3), reply)
	if !h.u.running() {
		t.Fatal("not running after begin")
	}
	h.upg.outcome <- nil // the new master called Ready
	if !h.u.finished(h.result(t)) {
		t.Fatal("finished = false after a successful upgrade")
	}
	if err := <-reply; err != nil {
		t.Errorf("reply: %v", err)
	}
	if h.u.running() || !h.u.handedOver {
		t.Errorf("running=%v handedOver=%v", h.u.running(), h.u.handedOver)
	}
	o := h.next.offers[0]
	if o.Workers != 3 || o.Generation != 7 || o.Upgrades["success"] != 7 {
		t.Errorf("offer %+v: want 3 workers, generation 7, success counted for the successor (7)", o)
	}
	if sd := h.sd.all(); !strings.Contains(sd, "RELOADING=1") || !strings.Contains(sd, "MAINPID=4242 READY=1") {
		t.Errorf("systemd was told:\n%s", sd)
	}
	if got, _ := h.u.snapshot(); got["success"] != 7 {
		t.Errorf("success = %d, want 7", got["success"])
	}
}

// With a pid file, the old master does not name the new one as MAINPID
// (systemd would supervise it as a pid that is not its child): systemd
// re-reads the pid file when the old master exits.
func TestUpgradeReadyWithPIDFileSendsNoMainPID(t *testing.T) {
	h := newUpgradeHarness(t)
	h.u.pidFile = "/run/preforkd/preforkd.pid"
	h.u.begin(openGate, offerOf(3), nil)
	h.upg.outcome <- nil
	if !h.u.finished(h.result(t)) {
		t.Fatal("finished = false after a successful upgrade")
	}
	if sd := h.sd.all(); strings.Contains(sd, "MAINPID=") || !strings.Contains(sd, "READY=1") {
		t.Errorf("systemd was told:\n%s\nwant READY=1 and no MAINPID=", sd)
	}
}

// failed checks an upgrade that did not succeed: the old generation keeps
// serving (READY=1 again), the reply names the cause, and a next upgrade
// may begin.
func (h *upgradeHarness) failed(t *testing.T, cause error, reply chan error) {
	t.Helper()
	if h.u.finished(h.result(t)) {
		t.Fatal("finished = true after a failed upgrade")
	}
	if err := <-reply; err == nil || !strings.Contains(err.Error(), cause.Error()) {
		t.Errorf("reply %v, want one naming %q", err, cause)
	}
	if h.u.handedOver || h.u.running() {
		t.Errorf("handedOver=%v running=%v after a failure", h.u.handedOver, h.u.running())
	}
	if sd := h.sd.all(); !strings.Contains(sd, "READY=1 STATUS=serving, generation 7 (upgrade failed)") {
		t.Errorf("systemd was not told that this generation serves on:\n%s", sd)
	}
	if got, _ := h.u.snapshot(); got["failed"] != 1 {
		t.Errorf("failed = %d, want 1", got["failed"])
	}
	again := make(chan error, 1)
	h.u.begin(openGate, offerOf(1), again)
	if !h.u.running() {
		t.Fatal("a new upgrade after a failure did not begin")
	}
}

func TestUpgradeNewMasterExits(t *testing.T) {
	h := newUpgradeHarness(t)
	reply := make(chan error, 1)
	h.u.begin(openGate, offerOf(2), reply)
	cause := errors.New("child 123 exited: exit status 1")
	h.upg.outcome <- cause
	h.failed(t, cause, reply)
}

func TestUpgradeNewMasterHangsPastTimeout(t *testing.T) {
	h := newUpgradeHarness(t)
	reply := make(chan error, 1)
	h.u.begin(openGate, offerOf(2), reply)
	select {
	case err := <-h.u.results:
		t.Fatalf("Upgrade returned %v while the new master hangs", err)
	case <-time.After(50 * time.Millisecond):
	}
	if !h.u.running() {
		t.Fatal("not running while the new master hangs")
	}
	cause := errors.New("new child 123 timed out") // tableflip kills it at UpgradeTimeout
	h.upg.outcome <- cause
	h.failed(t, cause, reply)
}

func TestUpgradeNotExecutable(t *testing.T) {
	h := newUpgradeHarness(t)
	reply := make(chan error, 1)
	h.u.begin(openGate, offerOf(2), reply)
	cause := errors.New("can't start child: fork/exec /usr/bin/app: permission denied")
	h.upg.outcome <- cause
	h.failed(t, cause, reply)
}

func TestUpgradeDuringUpgradeRefused(t *testing.T) {
	h := newUpgradeHarness(t)
	h.u.begin(openGate, offerOf(2), nil)
	second := make(chan error, 1)
	offered := false
	h.u.begin(openGate, func() linkMsg { offered = true; return linkMsg{} }, second)
	if err := <-second; err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second upgrade: %v, want a refusal (already running)", err)
	}
	if offered || len(h.next.offers) != 1 {
		t.Errorf("a refused upgrade made an offer (%d offers)", len(h.next.offers))
	}
	if got, _ := h.u.snapshot(); got["refused"] != 1 {
		t.Errorf("refused = %d, want 1", got["refused"])
	}
	h.upg.outcome <- nil
	if !h.u.finished(h.result(t)) {
		t.Error("the first upgrade did not complete")
	}
}

func TestUpgradeStopDuringUpgrade(t *testing.T) {
	h := newUpgradeHarness(t)
	reply := make(chan error, 1)
	h.u.begin(openGate, offerOf(2), reply)
	before := h.sd.all()
	h.u.abandon() // the master begins to stop
	if h.u.finished(h.result(t)) {
		t.Fatal("an abandoned upgrade handed over")
	}
	if err := <-reply; err == nil {
		t.Error("reply nil for an abandoned upgrade")
	}
	if h.sd.all() != before {
		t.Errorf("a stopping master told systemd more: %q", strings.TrimPrefix(h.sd.all(), before))
	}
	after := make(chan error, 1)
	h.u.begin(gate{stopping: true, ready: true, parentGone: true}, offerOf(2), after)
	if err := <-after; err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("upgrade while stopping: %v, want a refusal", err)
	}
}

func TestUpgradeRefusals(t *testing.T) {
	for _, tc := range []struct {
		g    gate
		want string
	}{
		{gate{ready: false, parentGone: true}, "not ready"},
		{gate{ready: true, parentGone: false}, "still draining"},
		{gate{ready: true, parentGone: true, pid1: true}, "PID 1"},
		{gate{ready: true, parentGone: true, stopping: true}, "stopping"},
	} {
		h := newUpgradeHarness(t)
		reply := make(chan error, 1)
		h.u.begin(tc.g, offerOf(1), reply)
		if err := <-reply; err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want a refusal naming %q", tc.g, err, tc.want)
		}
		if h.u.running() || h.upg.calls != 0 {
			t.Errorf("%+v: refused upgrade ran", tc.g)
		}
	}
}

// A new master that exits after a failed canary has sent its reason: the
// upgrade counts as rolled back (not failed), by cause, and the reply and
// systemd's status give the reason.
func TestUpgradeRolledBack(t *testing.T) {
	h := newUpgradeHarness(t)
	h.next.rollback = &linkMsg{Kind: "rollback", Cause: cause5xx, Reason: "canary 5xx ratio 20.0% (60 of 300 requests)"}
	reply := make(chan error, 1)
	h.u.begin(openGate, offerOf(3), reply)
	h.upg.outcome <- errors.New("child pid=9 exited: exit status 1")
	if h.u.finished(h.result(t)) {
		t.Fatal("finished = true after a rollback")
	}
	if err := <-reply; err == nil || !strings.Contains(err.Error(), "upgrade rolled back: canary 5xx ratio 20.0%") {
		t.Errorf("reply: %v", err)
	}
	results, rollbacks := h.u.snapshot()
	if results["rolled_back"] != 1 || results["failed"] != 0 || rollbacks[cause5xx] != 1 {
		t.Errorf("results %v, rollbacks %v: want one rolled_back (5xx), no failed", results, rollbacks)
	}
	if sd := h.sd.all(); !strings.Contains(sd, "upgrade rolled back: canary 5xx") || !strings.Contains(sd, "READY=1") {
		t.Errorf("systemd was told:\n%s", sd)
	}
}
