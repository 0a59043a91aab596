// Package demo is preforkd's built-in app and its generated shared table:
// what `go run ./cmd/preforkd` serves, and what the tests and benchmarks
// drive.
package demo

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/preforkd/preforkd/server"
	"github.com/preforkd/preforkd/state"
	"github.com/preforkd/preforkd/state/table"
	"github.com/preforkd/preforkd/worker"
)

// App is the built-in app. Every answer begins with one line naming the
// worker that served it:
//
//	preforkd demo worker=<slot> pid=<pid> generation=<n> version=<version>
//
// Routes: GET / (that line), GET /healthz, GET /sleep?ms=N, GET /grow?mb=N
// (allocate and keep N MiB), GET /state
// (size and CRC-32, as zlib computes it, of the shared region), GET /kv/<key> (a value of the
// shared table; 404 when missing or when the state is not a table).
// faults, when not nil, make it misbehave on purpose.
func App(version string, faults *Faults) server.App {
	return func(ctx context.Context, w *worker.Worker) error {
		d := &demo{
			line: fmt.Sprintf("preforkd demo worker=%d pid=%d generation=%d version=%s\n", w.Slot(), os.Getpid(), w.Generation(), version),
			data: w.State(),
		}
		if t, err := table.Open(d.data); err == nil {
			d.table = t
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /{$}", d.root)
		mux.HandleFunc("GET /healthz", d.healthz)
		mux.HandleFunc("GET /sleep", d.sleep)
		mux.HandleFunc("GET /state", d.state)
		mux.HandleFunc("GET /kv/{key...}", d.kv)
		mux.HandleFunc("GET /grow", d.grow)
		// Every stream socket handed to the worker serves the demo.
		return server.ServeHTTP(w, "", faults.wrap(mux, slog.Default().With("slot", w.Slot(), "pid", os.Getpid())))
	}
}

type demo struct {
	mu    sync.Mutex
	held  [][]byte // memory kept by /grow
	line  string
	data  []byte
	table *table.Table
	once  sync.Once
	sum   uint64
}

func (d *demo) root(w http.ResponseWriter, r *http.Request) { text(w, d.line) }

func (d *demo) healthz(w http.ResponseWriter, r *http.Request) { text(w, d.line+"ok\n") }

func (d *demo) sleep(w http.ResponseWriter, r *http.Request) {
	ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
	if err != nil || ms < 0 || ms > 600_000 {
		http.Error(w, d.line+"ms: want a number of milliseconds from 0 to 600000\n", http.StatusBadRequest)
		return
	}
	// The drain lets this finish: a request in flight is never cut short.
	time.Sleep(time.Duration(ms) * time.Millisecond)
	text(w, fmt.Sprintf("%sslept=%dms\n", d.line, ms))
}

// state answers the region's size and the CRC-32 (IEEE) of every byte of it,
// computed once per worker (the region is sealed: it cannot change).
func (d *demo) state(w http.ResponseWriter, r *http.Request) {
	d.once.Do(func() { d.sum = state.Checksum(d.data) })
	text(w, fmt.Sprintf("%ssize=%d checksum=%016x\n", d.line, len(d.data), d.sum))
}

func (d *demo) kv(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if d.table == nil {
		http.Error(w, d.line+"the shared state is not a key/value table\n", http.StatusNotFound)
		return
	}
	v, ok := d.table.GetString(key)
	if !ok {
		http.Error(w, d.line+"no such key: "+strings.ReplaceAll(key, "\n", " ")+"\n", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(d.line))
	w.Write(v)
	w.Write([]byte("\n"))
}

// grow allocates and keeps mb MiB (touching every page), so that operators
// and tests can watch -max-rss recycle a worker.
func (d *demo) grow(w http.ResponseWriter, r *http.Request) {
	mb, err := strconv.Atoi(r.URL.Query().Get("mb"))
	if err != nil || mb < 1 || mb > 4096 {
		http.Error(w, d.line+"mb: want a number of MiB from 1 to 4096\n", http.StatusBadRequest)
		return
	}
	b := make([]byte, mb<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	d.mu.Lock()
	d.held = append(d.held, b)
	d.mu.Unlock()
	text(w, fmt.Sprintf("%sheld=%dMiB\n", d.line, mb))
}

func text(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(s))
}
