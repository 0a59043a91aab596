package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// loadConfig configures the load generator.
type loadConfig struct {
	// Addr is the server's host:port; every request is GET Path.
	Addr, Path string
	// KeepAlive clients reuse one connection (a new one only after an
	// error or a "Connection: close"); Fresh clients open a connection per
	// request.
	KeepAlive, Fresh int
	// Rate is each client's request rate (req/s); 0 sends the next request
	// as soon as the last one is answered.
	Rate float64
	// Max bounds the run in time and MaxRequests in requests per client;
	// the run also ends at stop().
	Max         time.Duration
	MaxRequests int
}

// sample is one request: when it started (since the run began), how long
// it took, whether it succeeded, and which worker slot and process
// answered (parsed from the demo's line, "worker=… pid=…"; -1 when
// unknown).
type sample struct {
	start  time.Duration
	lat    time.Duration
	ok     bool
	fresh  bool
	worker int16
	pid    int32
}

// end is when the request completed (since the run began).
func (s sample) end() time.Duration { return s.start + s.lat }

// load is a running generator. Its clients are minimal HTTP/1.1 clients
// that never retry: every request that does not get a 200 answer counts as
// failed, as it would for wrk or a proxy.
type load struct {
	cfg  loadConfig
	t0   time.Time
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	mu   sync.Mutex
	res  [][]sample
	errs map[string]int
}

// startLoad starts the clients; call finish to stop them and collect.
func startLoad(cfg loadConfig) *load {
	l := &load{cfg: cfg, t0: time.Now(), stop: make(chan struct{}), errs: map[string]int{}}
	n := cfg.KeepAlive + cfg.Fresh
	l.res = make([][]sample, n)
	for i := 0; i < n; i++ {
		l.wg.Add(1)
		go l.client(i, i >= cfg.KeepAlive)
	}
	return l
}

// since is the time since the run began.
func (l *load) since(t time.Time) time.Duration { return t.Sub(l.t0) }

func (l *load) client(i int, fresh bool) {
	defer l.wg.Done()
	c := &httpClient{addr: l.cfg.Addr, fresh: fresh}
	defer c.close()
	req := "GET " + l.cfg.Path + " HTTP/1.1\r\nHost: " + l.cfg.Addr + "\r\n"
	if fresh {
		req += "Connection: close\r\n"
	}
	c.req = []byte(req + "\r\n")
	var interval time.Duration
	if l.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / l.cfg.Rate)
	}
	out := make([]sample, 0, 4096)
	deadline := l.t0.Add(l.cfg.Max)
	next := time.Now()
	for n := 0; n < l.cfg.MaxRequests; n++ {
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				select {
				case <-l.stop:
					l.keep(i, out)
					return
				case <-time.After(d):
				}
			}
			next = next.Add(interval)
			if time.Until(next) < -time.Second { // fell behind: don't burst
				next = time.Now()
			}
		}
		select {
		case <-l.stop:
			l.keep(i, out)
			return
		default:
		}
		began := time.Now()
		if began.After(deadline) {
			break
		}
		worker, pid, err := c.do()
		s := sample{start: began.Sub(l.t0), lat: time.Since(began), ok: err == nil, fresh: fresh, worker: int16(worker), pid: int32(pid)}
		out = append(out, s)
		if err != nil {
			l.noteErr(err)
		}
	}
	l.keep(i, out)
}

func (l *load) keep(i int, out []sample) {
	l.mu.Lock()
	l.res[i] = out
	l.mu.Unlock()
}

func (l *load) noteErr(err error) {
	msg := err.Error()
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		msg = "EOF"
	case errors.As(err, &ne) && ne.Timeout():
		msg = "timeout"
	}
	if op := (*net.OpError)(nil); errors.As(err, &op) && op.Err != nil {
		msg = op.Op + ": " + op.Err.Error()
	}
	l.mu.Lock()
	l.errs[msg]++
	l.mu.Unlock()
}

// finish stops the clients, waits for them, and returns every sample,
// by start time.
func (l *load) finish() []sample {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	var all []sample
	for _, r := range l.res {
		all = append(all, r...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].start < all[j].start })
	return all
}

// errors are the failures by kind.
func (l *load) errors() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.errs {
		out[k] = v
	}
	return out
}

// httpClient is one connection's worth of HTTP/1.1, without retries.
type httpClient struct {
	addr  string
	req   []byte
	fresh bool
	conn  net.Conn
	br    *bufio.Reader
}

var workerTag, pidTag = []byte("worker="), []byte("pid=")

// tagged is the number after tag in body (-1 when absent).
func tagged(body, tag []byte) int {
	i := bytes.Index(body, tag)
	if i < 0 {
		return -1
	}
	n := 0
	for _, b := range body[i+len(tag):] {
		if b < '0' || b > '9' {
			break
		}
		n = n*10 + int(b-'0')
	}
	return n
}

// do sends one request and reads the answer: the worker slot and pid the
// answer names. A fresh client then waits for the server to close (so
// that TIME_WAIT stays on the server's side and the bench does not run
// out of ephemeral ports).
func (c *httpClient) do() (worker, pid int, err error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return -1, -1, err
		}
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 4096)
		} else {
			c.br.Reset(conn)
		}
	}
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return -1, -1, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return -1, -1, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		c.close()
		return -1, -1, err
	}
	worker, pid = tagged(body, workerTag), tagged(body, pidTag)
	if c.fresh {
		c.br.Discard(c.br.Buffered())
		var one [1]byte
		c.conn.Read(one[:]) // EOF once the server closed
		c.close()
	} else if resp.Close {
		c.close()
	}
	if resp.StatusCode != http.StatusOK {
		return worker, pid, fmt.Errorf("status %d", resp.StatusCode)
	}
	return worker, pid, nil
}

func (c *httpClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}
