//go:build linux

package integration

import (
	"sort"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// 200 upgrades in a row under keep-alive, fresh-connection and slow
// clients that never retry (testutil.HTTPLoad) lose no request; a failure
// would be listed by kind.
func TestTwoHundredUpgradesLoseNothing(t *testing.T) {
	upgrades := 200
	if testing.Short() {
		upgrades = 20
	}
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-grace", "10s"}})
	load := testutil.StartHTTPLoad(
		testutil.LoadClient{URL: m.URL("/"), KeepAlive: true}, testutil.LoadClient{URL: m.URL("/"), KeepAlive: true},
		testutil.LoadClient{URL: m.URL("/")}, testutil.LoadClient{URL: m.URL("/")},
		testutil.LoadClient{URL: m.URL("/sleep?ms=50"), KeepAlive: true}, testutil.LoadClient{URL: m.URL("/sleep?ms=50"), KeepAlive: true})
	defer load.End()
	version := "v1"
	var took []time.Duration
	began := time.Now()
	for i := 0; i < upgrades; i++ {
		old := m.PID()
		version = map[string]string{"v1": "v2", "v2": "v1"}[version]
		took = append(took, m.Upgrade(version, 2))
		waitGone(t, old, 30*time.Second) // the next upgrade waits for the old master's exit
		testutil.WaitFor(t, 10*time.Second, "one master", func() bool { return len(mastersBelow()) == 1 })
	}
	time.Sleep(300 * time.Millisecond)
	ok, failures := load.End()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("%d upgrades in %v: SIGHUP → new generation serving median %v, max %v; %d requests, failures by kind %v",
		upgrades, time.Since(began).Round(time.Second), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), ok, failures)
	if len(failures) > 0 {
		t.Errorf("requests failed across %d upgrades: %v", upgrades, failures)
	}
	if ok < int64(upgrades)*10 {
		t.Errorf("only %d requests across %d upgrades: the load did not run", ok, upgrades)
	}
}
