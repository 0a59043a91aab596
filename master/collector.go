package master

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// masterCollector reads the master's state at scrape time.
type masterCollector struct{ m *master }

var (
	descWorkers = prometheus.NewDesc("prefork_workers", "Worker slots by state (starting, ready, stopping, backoff).", []string{"state"}, nil)
	descDesired = prometheus.NewDesc("prefork_workers_desired", "Number of worker slots wanted.", nil, nil)
	descGen     = prometheus.NewDesc("prefork_generation", "Generation of this master (1 at first start, +1 per upgrade).", nil, nil)
	descRestart = prometheus.NewDesc("prefork_worker_restarts_total", "Worker replacements by slot and reason.", []string{"slot", "reason"}, nil)
	descUpgrade = prometheus.NewDesc("prefork_upgrades_total", "Upgrades this master attempted, by result.", []string{"result"}, nil)
)

func (c *masterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWorkers, descDesired, descGen, descRestart, descUpgrade} {
		ch <- d
	}
}

func (c *masterCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	var st Status
	var ctr counters
	m.sup.do(func() { st = m.sup.snapshot(); ctr = m.sup.takeCounters() })
	byState := map[string]int{"starting": 0, "ready": 0, "stopping": len(st.Draining), "backoff": 0}
	for _, s := range st.Slots {
		byState[s.State]++
	}
	for k, v := range byState {
		ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(v), k)
	}
	ch <- prometheus.MustNewConstMetric(descDesired, prometheus.GaugeValue, float64(st.Desired))
	ch <- prometheus.MustNewConstMetric(descGen, prometheus.GaugeValue, float64(m.gen))
	for k, v := range ctr.Restarts {
		ch <- prometheus.MustNewConstMetric(descRestart, prometheus.CounterValue, float64(v), strconv.Itoa(k.slot), k.reason)
	}
	var ups map[string]uint64
	m.inLoop(func() {
		ups = make(map[string]uint64, len(m.upgrades))
		for k, v := range m.upgrades {
			ups[k] = v
		}
	})
	for _, r := range []string{"success", "failed", "refused"} {
		ch <- prometheus.MustNewConstMetric(descUpgrade, prometheus.CounterValue, float64(ups[r]), r)
	}
}
