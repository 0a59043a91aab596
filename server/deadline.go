package server

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// deadlines enforces a request timeout (HTTP.RequestTimeout) without a
// goroutine or a timer per request: each request takes a pooled record,
// linked into a list that one watchdog goroutine scans every quarter of
// the timeout. A request past it is answered 503 by the watchdog if its
// handler has written nothing yet, its goroutine's stack is logged once
// (found in the goroutine profile by a label the record carries), and it
// is counted. More than maxStuck requests past it, or one past 10 times
// it, make the worker ask to be recycled: its replacement starts first,
// and this worker drains within its grace period.
type deadlines struct {
	timeout  time.Duration
	maxStuck int
	log      *slog.Logger
	count    prometheus.Counter // nil: not counted
	recycle  func(reason string)
	recycled atomic.Bool

	mu   sync.Mutex
	head *reqRecord
	pool sync.Pool
	ids  atomic.Int64
}

// Record states.
const (
	reqFresh   = iota // nothing written yet
	reqWritten        // the handler has written: it owns the response
	reqExpired        // the watchdog answered 503: the handler's writes are dropped
	reqDone           // the handler returned
)

// reqRecord is one request in flight. Its fields but state and writer are
// guarded by deadlines.mu (links) or mu (the rest).
type reqRecord struct {
	prev, next *reqRecord
	mu         sync.Mutex
	state      atomic.Int32
	seq        uint64 // bumped at each reuse: a stale pointer is told apart
	start      time.Time
	noticed    bool // the watchdog has acted on it (under deadlines.mu)
	w          http.ResponseWriter
	method     string
	path       string
	id         string          // the goroutine label's value
	ctx        context.Context // carries the label, made once per record
	dw         deadlineWriter
}

func newDeadlines(timeout time.Duration, maxStuck int, reg *prometheus.Registry, recycle func(string), log *slog.Logger) *deadlines {
	d := &deadlines{timeout: timeout, maxStuck: maxStuck, recycle: recycle, log: log}
	d.pool.New = func() any {
		r := &reqRecord{id: strconv.FormatInt(d.ids.Add(1), 10)}
		r.ctx = pprof.WithLabels(context.Background(), pprof.Labels(labelKey, r.id))
		r.dw.rec = r
		return r
	}
	if reg != nil {
		d.count = prometheus.NewCounter(prometheus.CounterOpts{Name: "http_request_timeouts_total",
			Help: "Requests that ran past the request timeout (answered 503 if they had written nothing)."})
		if err := reg.Register(d.count); err != nil {
			d.count = nil
		}
	}
	return d
}

// timeoutBody is the 503's body.
const timeoutBody = "request timed out\n"

// labelKey is the goroutine label that ties a stack to its request.
const labelKey = "preforkd_request"

// wrap enforces the timeout on next's requests.
func (d *deadlines) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := d.pool.Get().(*reqRecord)
		rec.mu.Lock()
		rec.seq++
		rec.start, rec.w, rec.method, rec.path = time.Now(), w, r.Method, r.URL.Path
		rec.state.Store(reqFresh)
		rec.mu.Unlock()
		d.link(rec)
		pprof.SetGoroutineLabels(rec.ctx)
		defer func() {
			pprof.SetGoroutineLabels(context.Background())
			rec.mu.Lock() // waits for a 503 being written
			rec.state.Store(reqDone)
			rec.w = nil
			rec.mu.Unlock()
			d.unlink(rec)
			d.pool.Put(rec)
		}()
		next.ServeHTTP(&rec.dw, r)
	})
}

func (d *deadlines) link(r *reqRecord) {
	d.mu.Lock()
	r.noticed = false
	r.prev, r.next = nil, d.head
	if d.head != nil {
		d.head.prev = r
	}
	d.head = r
	d.mu.Unlock()
}

func (d *deadlines) unlink(r *reqRecord) {
	d.mu.Lock()
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		d.head = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	}
	r.prev, r.next = nil, nil
	d.mu.Unlock()
}

// run checks the requests until stop is closed.
func (d *deadlines) run(stop <-chan struct{}) {
	tick := time.NewTicker(max(d.timeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			d.check(now)
		}
	}
}

type expiry struct {
	rec *reqRecord
	seq uint64
	age time.Duration
}

func (d *deadlines) check(now time.Time) {
	var late []expiry
	stuck, hard := 0, false
	d.mu.Lock()
	for r := d.head; r != nil; r = r.next {
		r.mu.Lock()
		age, seq := now.Sub(r.start), r.seq
		r.mu.Unlock()
		if age < d.timeout {
			continue
		}
		stuck++
		hard = hard || age >= 10*d.timeout
		if !r.noticed {
			r.noticed = true
			late = append(late, expiry{r, seq, age})
		}
	}
	d.mu.Unlock()
	for _, e := range late {
		d.expire(e)
	}
	if (stuck > d.maxStuck || hard) && d.recycle != nil && d.recycled.CompareAndSwap(false, true) {
		d.log.Warn("requests stuck past the request timeout: asking to be replaced", "stuck", stuck, "timeout", d.timeout)
		d.recycle("request-timeout")
	}
}

// expire answers a late request 503 if it has written nothing, and logs
// its stack.
func (d *deadlines) expire(e expiry) {
	r := e.rec
	r.mu.Lock()
	if r.seq != e.seq || r.state.Load() == reqDone {
		r.mu.Unlock()
		return // finished meanwhile
	}
	answered := false
	// The handler cannot write meanwhile (claim waits for mu), but it could
	// still be changing its header map: a handler that sets headers at its
	// deadline races with this 503 (not guarded: a map has no lock to take).
	if r.state.Load() == reqFresh {
		r.state.Store(reqExpired)
		h := r.w.Header()
		h.Set("Content-Length", strconv.Itoa(len(timeoutBody))) // a complete answer now, not a chunk
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Connection", "close") // the connection stays busy until the handler returns
		r.w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(r.w, timeoutBody)
		if f, ok := r.w.(http.Flusher); ok {
			f.Flush()
		}
		answered = true
	}
	method, path, id := r.method, r.path, r.id
	r.mu.Unlock()
	if d.count != nil {
		d.count.Inc()
	}
	d.log.Error("request timed out", "method", method, "path", path, "elapsed", e.age.Round(time.Millisecond),
		"answered_503", answered, "stack", stackOf(id))
}

// stackOf is the stack of the goroutines labelled with id (the request's,
// and any it started), from the goroutine profile: one frame per line.
func stackOf(id string) string {
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 1)
	want := `"` + labelKey + `":"` + id + `"`
	var out []string
	in := false
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			in = false
		case strings.HasPrefix(line, "# labels:"):
			in = strings.Contains(line, want)
		case in && strings.HasPrefix(line, "#\t"):
			f := strings.Fields(line[2:])
			if len(f) >= 3 {
				out = append(out, f[1]+" "+f[2])
			}
		}
	}
	if len(out) == 0 {
		return "(not found: the request finished)"
	}
	return strings.Join(out, "\n")
}

// claim tells whether the handler may write: the first write takes the
// response unless the watchdog has answered it.
func (r *reqRecord) claim() bool {
	switch r.state.Load() {
	case reqWritten:
		return true
	case reqExpired, reqDone:
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state.Load() == reqFresh {
		r.state.Store(reqWritten)
	}
	return r.state.Load() == reqWritten
}

// deadlineWriter is the ResponseWriter a handler gets: its writes are
// dropped (http.ErrHandlerTimeout) once the watchdog has answered 503.
type deadlineWriter struct{ rec *reqRecord }

func (w *deadlineWriter) Header() http.Header { return w.rec.w.Header() }

func (w *deadlineWriter) Write(b []byte) (int, error) {
	if !w.rec.claim() {
		return 0, http.ErrHandlerTimeout
	}
	return w.rec.w.Write(b)
}

func (w *deadlineWriter) WriteHeader(code int) {
	if w.rec.claim() {
		w.rec.w.WriteHeader(code)
	}
}

func (w *deadlineWriter) Flush() {
	if w.rec.claim() {
		if f, ok := w.rec.w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.rec.w }
