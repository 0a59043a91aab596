package aggregate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// workerConn is the master's side of one worker's metrics socket: one reader
// goroutine keeps the latest frame, scrapes write requests and wait.
type workerConn struct {
	slot, pid int
	order     uint64 // Add order: later workers of a slot are newer
	c         streamConn
	log       *slog.Logger

	// removing is set by the first Remove; guarded by Aggregator.mu.
	removing bool

	wmu  sync.Mutex // serialises requests; guards next
	next uint64     // last seq written

	mu      sync.Mutex
	last    []famSnap     // latest decoded snapshot, never modified
	lastSeq uint64        // highest seq answered
	lastAt  time.Time     // arrival of the latest frame
	sent    uint64        // seq of the latest complete request
	final   bool          // the final snapshot arrived
	stopped bool          // the reader has returned
	changed chan struct{} // closed and replaced at every frame and at stop

	done chan struct{} // closed when the reader returns

	held   *budget // shared by every worker of the Aggregator
	mine   int64   // bytes of the snapshot this worker holds (reader only)
	bad    int     // undecodable frames in a row (reader only)
	refuse bool    // a frame over the budget was logged (reader only)

	// fams holds the families of the last accepted frame by their encoded
	// message: a family whose bytes did not change since (the HTTP series
	// of an idle worker, go_info, limits, most runtime series between two
	// close scrapes) is neither decoded nor indexed again (reader only).
	fams map[string]*famEntry
	wl   *dto.LabelPair // worker="<slot>", shared by every exported series
}

// famEntry is one family of a worker's last frame, prepared.
type famEntry struct {
	key  string // the encoded message, as received
	fs   famSnap
	keep bool // false: left out of the snapshot (empty or unknown type)
}

// maxBadFrames is how many undecodable frames in a row cut a worker off.
const maxBadFrames = 3

// budget bounds the snapshot bytes all workers hold together.
type budget struct {
	mu   sync.Mutex
	used int64
	max  int64
}

// swap replaces old held bytes by n if the total stays within max.
func (b *budget) swap(old, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used-old+n > b.max {
		return false
	}
	b.used += n - old
	return true
}

func newWorkerConn(slot, pid int, order uint64, f *os.File, log *slog.Logger, held *budget) *workerConn {
	return &workerConn{
		slot: slot, pid: pid, order: order, held: held,
		c:       newStreamConn(f),
		log:     log.With("slot", slot, "pid", pid),
		changed: make(chan struct{}),
		done:    make(chan struct{}),
		wl:      workerPair(slot),
	}
}

// read reads frames until the socket fails or closes.
func (w *workerConn) read() {
	defer close(w.done)
	br := bufio.NewReaderSize(w.c, 32<<10)
	var payload bytes.Buffer
	var err error
	for {
		var seq uint64
		seq, err = readFrame(br, &payload)
		if err != nil {
			break
		}
		snap, ok, cut := w.decode(payload.Bytes())
		if payload.Cap() > 1<<20 {
			payload = bytes.Buffer{} // don't keep a large buffer between scrapes
		}
		if cut {
			err = errCutOff
			break
		}
		w.mu.Lock()
		if ok {
			w.last = snap
		}
		w.lastSeq = max(w.lastSeq, seq)
		w.lastAt = time.Now()
		w.final = w.final || seq == finalSeq
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrClosed):
		w.log.Debug("metrics: worker socket closed")
	default:
		w.log.Warn("metrics: dropping worker metrics connection", "err", err)
		w.c.Close()
	}
	w.release()
	w.mu.Lock()
	w.stopped = true
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

// errCutOff ends the reading of a worker that keeps sending undecodable
// frames.
var errCutOff = errors.New("undecodable frames in a row: cut off")

// decode turns a frame's payload into a snapshot, within the budget. ok is
// false when the previous snapshot stays (undecodable, or over the
// budget); cut is true when the worker must be cut off. Families whose
// bytes equal one of the previous accepted frame are taken from it.
func (w *workerConn) decode(b []byte) (snap []famSnap, ok, cut bool) {
	msgs, err := splitMessages(b)
	next := make(map[string]*famEntry, len(msgs))
	snap = make([]famSnap, 0, len(msgs))
	for _, msg := range msgs {
		if err != nil {
			break
		}
		e := w.fams[string(msg)]
		if e == nil {
			e = next[string(msg)]
		}
		if e == nil {
			var mf *dto.MetricFamily
			if mf, err = decodeFamily(msg); err != nil {
				break
			}
			e = &famEntry{key: string(msg)}
			e.fs, e.keep = prepareFamily(w.wl, mf)
		}
		next[e.key] = e
		if e.keep {
			snap = append(snap, e.fs)
		}
	}
	if err != nil {
		w.bad++
		w.log.Warn("metrics: undecodable snapshot from worker", "err", err, "in_a_row", w.bad)
		return nil, false, w.bad >= maxBadFrames
	}
	w.bad = 0
	n := int64(len(b))
	if !w.held.swap(w.mine, n) {
		if !w.refuse {
			w.refuse = true
			w.log.Warn("metrics: snapshot dropped: the master holds its limit of workers' snapshots (logged once per worker)",
				"bytes", n, "limit", w.held.max)
		}
		return nil, false, false
	}
	w.mine = n
	w.fams = next
	return snap, true, false
}

// release gives the worker's bytes back to the budget (after the reader
// stopped).
func (w *workerConn) release() {
	w.held.swap(w.mine, 0)
	w.mine = 0
	w.fams = nil
}

// snapshot returns the latest snapshot (shared: read only).
func (w *workerConn) snapshot() []famSnap {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// request outcome
type reqState int

const (
	reqWait    reqState = iota // wait for a frame with seq ≥ want
	reqNone                    // nothing to wait for: worker finished or gone
	reqTimeout                 // the request could not be written in time
)

// request asks for a fresh snapshot, unless a request is still unanswered
// (then that one is waited for), and returns the seq to wait for.
func (w *workerConn) request(deadline time.Time) (want uint64, st reqState) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	final, stopped, sent, answered := w.final, w.stopped, w.sent, w.lastSeq
	w.mu.Unlock()
	switch {
	case final || stopped:
		return 0, reqNone
	case sent > answered:
		return sent, reqWait
	}
	seq := w.next + 1
	var b [requestLen]byte
	binary.LittleEndian.PutUint64(b[:], seq)
	_ = w.c.SetWriteDeadline(deadline)
	n, err := w.c.Write(b[:])
	switch {
	case n == len(b):
		w.next = seq
		w.mu.Lock()
		w.sent = seq
		w.mu.Unlock()
		return seq, reqWait
	case n > 0:
		// A torn request would desynchronise the worker's reading.
		w.log.Warn("metrics: partial request write, closing worker metrics connection", "err", err)
		w.c.Close()
		return 0, reqNone
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, reqTimeout
	}
	return 0, reqNone
}

// wait waits until a frame with seq ≥ want arrived, the reader stopped or
// ctx ends. It returns when the answer arrived and whether it did.
func (w *workerConn) wait(ctx context.Context, want uint64) (at time.Time, answered bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.lastSeq < want && !w.stopped {
		ch := w.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			w.mu.Lock()
			return w.lastAt, w.lastSeq >= want
		}
		w.mu.Lock()
	}
	return w.lastAt, w.lastSeq >= want
}

// finish waits up to d for the reader to reach the end of the stream,
// then closes the socket and waits for the reader.
func (w *workerConn) finish(d time.Duration) {
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-w.done:
		case <-t.C:
		}
		t.Stop()
	}
	w.c.Close()
	<-w.done
}
