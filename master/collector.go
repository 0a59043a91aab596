//go:build linux

package master

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// masterCollector reads the master's state at scrape time. Per-worker
// series carry worker="<slot>", like the workers' own series.
type masterCollector struct {
	m *master

	memMu sync.Mutex
	mem   map[int]memReading // by pid: the last smaps_rollup reading
}

// memReading is one reading of a worker's memory.
type memReading struct {
	at  time.Time
	mem Memory
}

// memMaxAge is how long a reading of a worker's memory is reused by later
// scrapes. smaps_rollup walks the worker's page tables (about 0.25 ms for
// a 25 MiB worker here, so 8 ms of CPU per scrape at 32 workers);
// prefork_worker_memory_age_seconds says how old the oldest reading served is.
const memMaxAge = time.Second

var (
	descWorkers  = prometheus.NewDesc("prefork_workers", "Worker processes by state (starting, ready, stopping, backoff: a slot waiting to restart; spare, with -spare).", []string{"state"}, nil)
	descDesired  = prometheus.NewDesc("prefork_workers_desired", "Number of worker slots wanted.", nil, nil)
	descGen      = prometheus.NewDesc("prefork_generation", "Generation of this master (1 at first start, +1 per upgrade).", nil, nil)
	descRestart  = prometheus.NewDesc("prefork_worker_restarts_total", "Worker replacements by slot and reason (exit, signal, heartbeat, start-timeout, rolling, max-rss, max-requests).", []string{"worker", "reason"}, nil)
	descBackoff  = prometheus.NewDesc("prefork_worker_backoff_seconds", "Current restart delay of the slot (0 when its worker runs).", []string{"worker"}, nil)
	descUpgrade  = prometheus.NewDesc("prefork_upgrades_total", "Upgrades this master attempted, by result (success, failed, rolled_back, refused).", []string{"result"}, nil)
	descRollback = prometheus.NewDesc("prefork_upgrade_rollbacks_total", "Upgrades rolled back by a failed canary, by cause (start, crash, 5xx, latency).", []string{"reason"}, nil)
	descState    = prometheus.NewDesc("prefork_state_size_bytes", "Size of the shared read-only state region.", nil, nil)
	descMemory   = prometheus.NewDesc("prefork_worker_memory_bytes", "Worker memory from /proc/<pid>/smaps_rollup, by kind (rss, pss, pss_shmem).", []string{"worker", "kind"}, nil)
	descRejected = prometheus.NewDesc("prefork_notify_rejected_total", "Notifications dropped: from a pid that is not a worker (stranger), oversized, or malformed.", []string{"reason"}, nil)
	descStartErr = prometheus.NewDesc("prefork_worker_start_failures_total", "Worker processes that could not be started (out of processes or descriptors, exec failed).", nil, nil)
	descDropped  = prometheus.NewDesc("prefork_worker_output_dropped_bytes_total", "Bytes of workers' output dropped because the master's stream took it more slowly than workers wrote (-worker-output label).", []string{"stream"}, nil)
	descMaxRSS   = prometheus.NewDesc("prefork_worker_max_rss_bytes", "The -max-rss limit: a worker whose RSS exceeds it is replaced (absent when off).", nil, nil)
	descMemAge   = prometheus.NewDesc("prefork_worker_memory_age_seconds", "Age of the oldest prefork_worker_memory_bytes reading in this scrape (a reading is reused for up to 1 s).", nil, nil)
)

// newStartHistogram is the start-to-ready histogram the supervisor observes.
func newStartHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "prefork_worker_start_duration_seconds",
		Help:    "Time from a worker's start to its READY=1.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
}

func (c *masterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWorkers, descDesired, descGen, descRestart, descBackoff, descUpgrade,
		descState, descMemory, descRejected, descStartErr, descMaxRSS, descRollback, descDropped, descMemAge} {
		ch <- d
	}
}

func (c *masterCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	var (
		st  Status
		ctr counters
	)
	m.sup.do(func() { st = m.sup.snapshot(); ctr = m.sup.takeCounters() })
	byState := map[string]int{"starting": 0, "ready": 0, "stopping": len(st.Draining), "backoff": 0}
	if m.cfg.Spare > 0 {
		byState["spare"] = len(st.Spares)
	}
	for _, s := range st.Slots {
		byState[s.State]++
		if s.Replacing != 0 {
			byState["starting"]++
		}
		ch <- prometheus.MustNewConstMetric(descBackoff, prometheus.GaugeValue, s.Backoff, strconv.Itoa(s.Slot))
	}
	for k, v := range byState {
		ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(v), k)
	}
	ch <- prometheus.MustNewConstMetric(descDesired, prometheus.GaugeValue, float64(st.Desired))
	ch <- prometheus.MustNewConstMetric(descGen, prometheus.GaugeValue, float64(m.gen))
	for k, v := range ctr.Restarts {
		ch <- prometheus.MustNewConstMetric(descRestart, prometheus.CounterValue, float64(v), strconv.Itoa(k.slot), k.reason)
	}
	ch <- prometheus.MustNewConstMetric(descStartErr, prometheus.CounterValue, float64(st.StartFailures))
	var ups, rbs map[string]uint64
	m.do(func() { ups, rbs = m.up.snapshot() })
	for _, r := range upgradeResults {
		ch <- prometheus.MustNewConstMetric(descUpgrade, prometheus.CounterValue, float64(ups[r]), r)
	}
	for _, c := range rollbackCauses {
		ch <- prometheus.MustNewConstMetric(descRollback, prometheus.CounterValue, float64(rbs[c]), c)
	}
	for _, s := range []*outputSink{m.out, m.errOut} {
		if s != nil {
			ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.dropped.Load()), s.name)
		}
	}
	if m.cfg.MaxRSS > 0 {
		ch <- prometheus.MustNewConstMetric(descMaxRSS, prometheus.GaugeValue, float64(m.cfg.MaxRSS))
	}
	if m.res.region != nil {
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, float64(m.res.region.Size()))
	}
	rejected := map[string]uint64{
		"stranger":  st.NotifyRejected,
		"oversized": m.res.notify.oversized.Load(),
		"malformed": m.res.notify.malformed.Load(),
	}
	for k, v := range rejected {
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(v), k)
	}
	c.collectMemory(ch, st.Slots)
}

// collectMemory reads every worker's memory; smaps_rollup costs about 10 µs
// per MiB resident, so the workers are read in parallel, and a reading less
// than memMaxAge old is reused.
func (c *masterCollector) collectMemory(ch chan<- prometheus.Metric, slots []SlotStatus) {
	m := c.m
	if m.readMemory == nil {
		return
	}
	c.memMu.Lock()
	defer c.memMu.Unlock()
	now := time.Now()
	prev := c.mem
	c.mem = make(map[int]memReading, len(slots))
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		old time.Time // the oldest reading served
	)
	for _, s := range slots {
		if s.PID == 0 {
			continue
		}
		emit := func(r memReading) {
			w := strconv.Itoa(s.Slot)
			ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(r.mem.RSS), w, "rss")
			ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(r.mem.PSS), w, "pss")
			ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(r.mem.PSSShmem), w, "pss_shmem")
			mu.Lock()
			c.mem[s.PID] = r
			if old.IsZero() || r.at.Before(old) {
				old = r.at
			}
			mu.Unlock()
		}
		if r, ok := prev[s.PID]; ok && now.Sub(r.at) < memMaxAge {
			emit(r)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			mem, err := m.readMemory(s.PID)
			if err == nil {
				emit(memReading{at: time.Now(), mem: mem})
			}
		}()
	}
	wg.Wait()
	if !old.IsZero() {
		ch <- prometheus.MustNewConstMetric(descMemAge, prometheus.GaugeValue, max(time.Since(old), 0).Seconds())
	}
}
