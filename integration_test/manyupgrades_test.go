//go:build linux

package integration

import (
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// noRetryLoad is clients that never retry: each request has a body that
// cannot be replayed (net/http's Transport re-sends a GET whose reused
// connection failed before any answer, which would hide exactly the
// losses this looks for). Failures are kept by kind.
type noRetryLoad struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	ok       atomic.Int64
	mu       sync.Mutex
	failures map[string]int
}

func startNoRetryLoad(url string, keepAlive, fresh, slow int, slowURL string) *noRetryLoad {
	l := &noRetryLoad{stop: make(chan struct{}), failures: map[string]int{}}
	client := func(u string, keep bool) {
		defer l.wg.Done()
		tr := &http.Transport{DisableKeepAlives: !keep, MaxIdleConnsPerHost: 1}
		c := &http.Client{Timeout: 20 * time.Second, Transport: tr}
		defer tr.CloseIdleConnections()
		deadline := time.Now().Add(maxLoadTime)
		for n := 0; n < maxLoadRequests && time.Now().Before(deadline); n++ {
			select {
			case <-l.stop:
				return
			default:
			}
			req, _ := http.NewRequest("GET", u, io.NopCloser(strings.NewReader(""))) // not replayable
			resp, err := c.Do(req)
			kind := ""
			if err != nil {
				kind = err.Error()
				if i := strings.LastIndex(kind, ": "); i >= 0 {
					kind = kind[i+2:] // the cause, without the URL
				}
			} else {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					kind = "body: " + err.Error()
				case resp.StatusCode != 200:
					kind = resp.Status
				}
			}
			if kind == "" {
				l.ok.Add(1)
				continue
			}
			l.mu.Lock()
			l.failures[kind]++
			l.mu.Unlock()
		}
	}
	for i := 0; i < keepAlive+fresh; i++ {
		l.wg.Add(1)
		go client(url, i < keepAlive)
	}
	for i := 0; i < slow; i++ {
		l.wg.Add(1)
		go client(slowURL, true)
	}
	return l
}

func (l *noRetryLoad) end() (int64, map[string]int) {
	close(l.stop)
	l.wg.Wait()
	return l.ok.Load(), l.failures
}

// 200 upgrades in a row under keep-alive, fresh-connection and slow
// clients that never retry lose no request; a failure would be listed by
// kind.
func TestTwoHundredUpgradesLoseNothing(t *testing.T) {
	upgrades := 200
	if testing.Short() {
		upgrades = 20
	}
	m := startMaster(t, Opts{Workers: 2, Args: []string{"-grace", "10s"}})
	load := startNoRetryLoad(m.URL("/"), 2, 2, 2, m.URL("/sleep?ms=50"))
	defer func() {
		select {
		case <-load.stop:
		default:
			load.end()
		}
	}()
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
	ok, failures := load.end()
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
