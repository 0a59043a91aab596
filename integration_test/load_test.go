//go:build linux

package integration

import (
	"errors"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Load runs HTTP clients against the demo until stopped. Every loop is
// bounded: it stops by itself after maxLoadTime or maxLoadRequests.
type Load struct {
	ok, failed, refused, non2xx atomic.Int64
	mu                          sync.Mutex
	errs                        []string
	pids                        map[int]int
	versions                    map[string]int
	stop                        chan struct{}
	wg                          sync.WaitGroup
}

const (
	maxLoadTime     = 5 * time.Minute
	maxLoadRequests = 2_000_000
)

// LoadKind chooses how clients connect.
type LoadKind int

const (
	Fresh     LoadKind = iota // a new connection per request
	KeepAlive                 // a conforming client with a connection pool
)

// startLoad starts n clients of the given kind requesting path.
func startLoad(t testing.TB, url string, n int, kind LoadKind) *Load {
	l := &Load{pids: map[int]int{}, versions: map[string]int{}, stop: make(chan struct{})}
	var total atomic.Int64
	deadline := time.Now().Add(maxLoadTime)
	for i := 0; i < n; i++ {
		c := fresh()
		if kind == KeepAlive {
			c = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer c.CloseIdleConnections()
			for total.Add(1) < maxLoadRequests && time.Now().Before(deadline) {
				select {
				case <-l.stop:
					return
				default:
				}
				l.one(c, url)
			}
		}()
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

func (l *Load) one(c *http.Client, url string) {
	code, body, err := get(c, url)
	switch {
	case err != nil:
		l.failed.Add(1)
		if errors.Is(err, syscall.ECONNREFUSED) {
			l.refused.Add(1)
		}
		l.note(err.Error())
	case code/100 != 2:
		l.failed.Add(1)
		l.non2xx.Add(1)
		l.note("status " + http.StatusText(code) + ": " + strings.TrimSpace(body))
	default:
		l.ok.Add(1)
		if d, ok := parseDemo(body); ok {
			l.mu.Lock()
			l.pids[d.PID]++
			l.versions[d.Version]++
			l.mu.Unlock()
		}
	}
}

func (l *Load) note(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 20 {
		l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+s)
	}
}

// Stop stops the clients and waits for them. Safe to call twice.
func (l *Load) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// Errors are the first errors seen.
func (l *Load) Errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

// PIDs are the distinct worker pids that answered.
func (l *Load) PIDs() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for p := range l.pids {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

// Versions counts answers by version.
func (l *Load) Versions() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.versions {
		out[k] = v
	}
	return out
}
