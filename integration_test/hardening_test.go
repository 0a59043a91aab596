package integration

import (
	"slices"
	"syscall"
	"testing"
	"time"
)

// A master that was itself stopped (SIGSTOP, a paused VM) for longer than
// -heartbeat does not kill its healthy workers on resume.
func TestPausedMasterKeepsWorkers(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-heartbeat", "1s"}})
	before := m.Status().ReadyPIDs()
	m.Signal(syscall.SIGSTOP)
	time.Sleep(4 * time.Second)
	m.Signal(syscall.SIGCONT)
	time.Sleep(3 * time.Second) // three heartbeats after the resume
	after := m.Status().ReadyPIDs()
	slices.Sort(before)
	slices.Sort(after)
	if !slices.Equal(before, after) {
		t.Errorf("workers %v before the pause, %v after: healthy workers were replaced\n%s", before, after, m.Log)
	}
	if l := logLines(m.Log.String(), "missed its heartbeat"); len(l) > 0 {
		t.Errorf("heartbeat kills after the master's pause: %v", l)
	}
	if l := logLines(m.Log.String(), "restarting the heartbeat watch"); len(l) == 0 {
		t.Errorf("the pause is not logged")
	}
}
