package aggregate

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

const (
	defaultTimeout = 500 * time.Millisecond
	// removeWait bounds how long Remove waits for a final snapshot.
	removeWait = 200 * time.Millisecond
)

// AggregatorOptions configures an Aggregator. The zero value is ready to use.
type AggregatorOptions struct {
	// Timeout is how long a scrape waits for the workers' answers and for
	// the predecessor's totals. Defaults to 500ms.
	Timeout time.Duration
	// Logger receives protocol errors (Warn) and scrape timeouts (Debug),
	// each with the worker's slot and pid; give it the generation as an
	// attribute. Defaults to slog.Default().
	Logger *slog.Logger
	// MaxHeld bounds the bytes of snapshots (as received) the Aggregator
	// holds for all workers together; a frame that would take it past
	// that is dropped and the worker's previous copy kept. Defaults to
	// 256 MiB.
	MaxHeld int64
}

// defaultMaxHeld is the default AggregatorOptions.MaxHeld.
const defaultMaxHeld = 256 << 20

// Aggregator is the master's view of every worker's registry: a
// prometheus.Gatherer that merges them, labelled by slot, with the counters
// carried over from dead workers and predecessor masters. See the package
// documentation. All methods are safe for concurrent use.
type Aggregator struct {
	timeout time.Duration
	log     *slog.Logger

	mu        sync.Mutex
	workers   map[int]*workerConn // by pid
	order     uint64
	carry     map[int]seriesSet // by slot
	timeouts  map[int]uint64    // by slot
	durations map[int]float64   // by slot: seconds the last scrape took
	pred      *predecessor
	closed    bool

	wg sync.WaitGroup // readers and predecessor calls

	held *budget // snapshot bytes held, for all workers

	gmu      sync.Mutex
	inflight *gatherCall // the gather that concurrent scrapes share
}

// gatherCall is one gather, shared by the scrapes that arrive while it runs.
type gatherCall struct {
	done chan struct{}
	mfs  []*dto.MetricFamily
}

// predecessor is a running previous master whose totals are added.
type predecessor struct {
	fn   func(ctx context.Context) (*Carry, error)
	last map[int]seriesSet // last totals fn returned, minus done slots
	done map[int]bool      // slots whose final totals came through AddCarry
	call chan struct{}     // non-nil while fn runs; closed when it returns
}

// NewAggregator returns an Aggregator without workers. Close stops it.
func NewAggregator(opts AggregatorOptions) *Aggregator {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxHeld <= 0 {
		opts.MaxHeld = defaultMaxHeld
	}
	return &Aggregator{
		held:      &budget{max: opts.MaxHeld},
		timeout:   opts.Timeout,
		log:       opts.Logger,
		workers:   make(map[int]*workerConn),
		carry:     make(map[int]seriesSet),
		timeouts:  make(map[int]uint64),
		durations: make(map[int]float64),
	}
}

// Add takes ownership of f, the master's end of the metrics socketpair of
// worker pid in slot, and starts a goroutine reading it. f should be a
// socket (see the package doc). If pid is already known (a reused pid), the
// earlier worker is taken as dead and folded into its slot's carry first.
// After Close, Add just closes f.
func (a *Aggregator) Add(slot, pid int, f *os.File) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		f.Close()
		return
	}
	if old := a.workers[pid]; old != nil && !old.removing {
		old.removing = true
		old.c.Close()
		a.foldLocked(old)
	}
	a.order++
	w := newWorkerConn(slot, pid, a.order, f, a.log, a.held)
	a.workers[pid] = w
	if _, ok := a.timeouts[slot]; !ok {
		a.timeouts[slot] = 0
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		w.read()
	}()
}

// Remove is called after worker pid exited. It waits at most ~200ms for the
// rest of the stream (a final snapshot may still be in the socket), closes
// the socket, then folds the worker's last seen counter, histogram and
// summary count/sum values into its slot's carry and drops its gauges. Until
// then the worker's last copy is still exported. An unknown pid, or a pid
// whose Remove is already running, returns at once.
func (a *Aggregator) Remove(pid int) {
	a.mu.Lock()
	w := a.workers[pid]
	if w == nil || w.removing {
		a.mu.Unlock()
		return
	}
	w.removing = true
	a.mu.Unlock()

	w.finish(removeWait)

	a.mu.Lock()
	a.foldLocked(w)
	a.mu.Unlock()
}

// foldLocked moves w's last snapshot into the carry and forgets w.
func (a *Aggregator) foldLocked(w *workerConn) {
	foldFamilies(a.carry, w.slot, w.snapshot())
	if a.workers[w.pid] == w {
		delete(a.workers, w.pid)
	}
}

// Gather implements prometheus.Gatherer. It asks every live worker for a
// fresh snapshot concurrently and waits at most Timeout; a worker that did
// not answer in time is served from its last copy and counted in
// prefork_metrics_scrape_timeouts_total{worker}. It returns every worker
// series labelled worker="<slot>", counters, histograms and summary
// count/sum being the sum of the slot's live workers' values, its carry and
// the predecessor's current totals (see SetPredecessor); and the families
//
//	prefork_metrics_scrape_timeouts_total{worker}            counter
//	prefork_metrics_worker_scrape_duration_seconds{worker}  gauge (last scrape)
//
// A worker that is being removed, has sent its final snapshot or whose
// socket closed is not asked: its last copy is used. Families come sorted by
// name and metrics by labels. Where sources disagree on a family's type, the
// worker added first wins and the others' series of that family are dropped
// (carried series come after every live worker). The returned families share
// label pairs, exemplars and other parts with earlier results and with the
// workers' snapshots: read them, do not modify them. The error is always nil.
//
// Concurrent calls share one gather: a call that finds one running waits
// for it and returns its result, so that many scrapes at once cost the
// workers one answer each, not one per scrape.
func (a *Aggregator) Gather() ([]*dto.MetricFamily, error) {
	a.gmu.Lock()
	if c := a.inflight; c != nil {
		a.gmu.Unlock()
		<-c.done
		return c.mfs, nil
	}
	c := &gatherCall{done: make(chan struct{})}
	a.inflight = c
	a.gmu.Unlock()
	c.mfs = a.gather()
	a.gmu.Lock()
	a.inflight = nil
	a.gmu.Unlock()
	close(c.done)
	return c.mfs, nil
}

func (a *Aggregator) gather() []*dto.MetricFamily {
	start := time.Now()
	deadline := start.Add(a.timeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	a.mu.Lock()
	ws := make([]*workerConn, 0, len(a.workers))
	for _, w := range a.workers {
		if !w.removing {
			ws = append(ws, w)
		}
	}
	predCall := a.callPredecessorLocked()
	a.mu.Unlock()

	wants := make([]uint64, len(ws))
	states := make([]reqState, len(ws))
	for i, w := range ws { // writes of 8 bytes: they don't block in practice
		wants[i], states[i] = w.request(deadline)
	}
	timedOut := make([]bool, len(ws))
	durs := make([]float64, len(ws)) // -1: no answer, and not for lack of time
	for i, w := range ws {
		switch states[i] {
		case reqNone:
			durs[i] = -1
		case reqTimeout:
			timedOut[i], durs[i] = true, a.timeout.Seconds()
		case reqWait:
			at, ok := w.wait(ctx, wants[i])
			switch {
			case ok:
				durs[i] = max(at.Sub(start), 0).Seconds()
			case ctx.Err() != nil:
				timedOut[i], durs[i] = true, a.timeout.Seconds()
			default: // the socket closed: the worker is gone
				durs[i] = -1
			}
		}
	}
	if predCall != nil {
		select {
		case <-predCall:
		case <-ctx.Done():
		}
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	for slot := range a.durations {
		delete(a.durations, slot)
	}
	for i, w := range ws {
		if durs[i] < 0 {
			continue
		}
		if timedOut[i] {
			a.timeouts[w.slot]++
			w.log.Debug("metrics: worker did not answer in time, serving its last copy", "timeout", a.timeout)
		}
		a.durations[w.slot] = max(a.durations[w.slot], durs[i])
	}
	return a.buildLocked()
}

// buildLocked merges the live snapshots, the carry and the predecessor's
// totals.
func (a *Aggregator) buildLocked() []*dto.MetricFamily {
	mg := newMerger()
	timeouts := make(map[int]float64, len(a.timeouts))
	for slot, n := range a.timeouts {
		timeouts[slot] = float64(n)
	}
	mg.reserve(selfFamily("prefork_metrics_scrape_timeouts_total",
		"Scrapes in which the worker in a slot did not answer within the timeout (its last copy was served).",
		dto.MetricType_COUNTER, timeouts))
	mg.reserve(selfFamily("prefork_metrics_worker_scrape_duration_seconds",
		"Time the worker in a slot took to answer the last scrape (the timeout when it did not answer).",
		dto.MetricType_GAUGE, a.durations))

	live := make([]*workerConn, 0, len(a.workers))
	for _, w := range a.workers {
		live = append(live, w)
	}
	slices.SortFunc(live, func(x, y *workerConn) int { return int(x.order) - int(y.order) })
	for _, w := range live {
		for _, fs := range w.snapshot() {
			mg.addLive(w.slot, fs)
		}
	}
	for slot, set := range a.carry {
		for _, s := range set {
			mg.addCarried(slot, s)
		}
	}
	if p := a.pred; p != nil {
		for slot, set := range p.last {
			for _, s := range set {
				mg.addCarried(slot, s)
			}
		}
	}
	return mg.result()
}

// selfFamily builds one of the Aggregator's own families: one metric per
// slot, labelled worker="<slot>".
func selfFamily(name, help string, typ dto.MetricType, vals map[int]float64) *dto.MetricFamily {
	mf := &dto.MetricFamily{Name: new(name), Help: new(help), Type: typ.Enum()}
	for slot, v := range vals {
		m := &dto.Metric{Label: []*dto.LabelPair{{Name: new(workerLabel), Value: new(strconv.Itoa(slot))}}}
		if typ == dto.MetricType_COUNTER {
			m.Counter = &dto.Counter{Value: new(v)}
		} else {
			m.Gauge = &dto.Gauge{Value: new(v)}
		}
		mf.Metric = append(mf.Metric, m)
	}
	slices.SortFunc(mf.Metric, compareMetrics)
	return mf
}
