package testutil

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadClient is one client of an HTTPLoad: GET URL in a loop, on one
// keep-alive connection or a fresh one per request, pausing Pause between
// requests.
type LoadClient struct {
	URL       string
	KeepAlive bool
	Pause     time.Duration
}

// HTTPLoad is clients that never retry: each request has a body that
// cannot be replayed, since net/http's Transport re-sends a GET whose
// reused connection failed before any answer, which would hide exactly
// the losses a test looks for. Failures are kept by kind. Each client
// stops by itself after 5 minutes or 2,000,000 requests.
type HTTPLoad struct {
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	ok       atomic.Int64
	mu       sync.Mutex
	failures map[string]int
}

// StartHTTPLoad starts the clients; End stops them.
func StartHTTPLoad(clients ...LoadClient) *HTTPLoad {
	l := &HTTPLoad{stop: make(chan struct{}), failures: map[string]int{}}
	for _, c := range clients {
		l.wg.Add(1)
		go l.run(c)
	}
	return l
}

func (l *HTTPLoad) run(lc LoadClient) {
	defer l.wg.Done()
	tr := &http.Transport{DisableKeepAlives: !lc.KeepAlive, MaxIdleConnsPerHost: 1}
	c := &http.Client{Timeout: 20 * time.Second, Transport: tr}
	defer tr.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Minute)
	for n := 0; n < 2_000_000 && time.Now().Before(deadline); n++ {
		select {
		case <-l.stop:
			return
		default:
		}
		if kind := l.one(c, lc.URL); kind == "" {
			l.ok.Add(1)
		} else {
			l.mu.Lock()
			l.failures[kind]++
			l.mu.Unlock()
		}
		if lc.Pause > 0 {
			time.Sleep(lc.Pause)
		}
	}
}

// one sends a request and returns "" or the kind of its failure.
func (l *HTTPLoad) one(c *http.Client, url string) string {
	req, _ := http.NewRequest("GET", url, io.NopCloser(strings.NewReader(""))) // not replayable
	resp, err := c.Do(req)
	if err != nil {
		kind := err.Error()
		if i := strings.LastIndex(kind, ": "); i >= 0 {
			kind = kind[i+2:] // the cause, without the URL
		}
		return kind
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return "body: " + err.Error()
	case resp.StatusCode != http.StatusOK:
		return resp.Status
	}
	return ""
}

// End stops the clients (safe to call twice) and returns the successes
// and the failures by kind.
func (l *HTTPLoad) End() (int64, map[string]int) {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.failures))
	for k, v := range l.failures {
		out[k] = v
	}
	return l.ok.Load(), out
}
