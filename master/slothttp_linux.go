//go:build linux

package master

import (
	"math"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// slotHTTP scrapes the workers (as /metrics does) and sums each slot's
// HTTP series: requests and 5xx by code, the in-flight gauge, and the
// duration histogram's buckets over methods.
func (m *master) slotHTTP() map[int]*SlotHTTP {
	fams, _ := m.agg.Gather()
	out := map[int]*SlotHTTP{}
	get := func(metric *dto.Metric) *SlotHTTP {
		for _, l := range metric.GetLabel() {
			if l.GetName() == "worker" {
				if slot, err := strconv.Atoi(l.GetValue()); err == nil {
					if out[slot] == nil {
						out[slot] = &SlotHTTP{}
					}
					return out[slot]
				}
			}
		}
		return nil
	}
	for _, f := range fams {
		for _, metric := range f.GetMetric() {
			switch f.GetName() {
			case requestsSeries:
				if h := get(metric); h != nil {
					v := metric.GetCounter().GetValue()
					h.Requests += v
					for _, l := range metric.GetLabel() {
						if l.GetName() == "code" && strings.HasPrefix(l.GetValue(), "5") {
							h.Errors += v
						}
					}
				}
			case "http_requests_in_flight":
				if h := get(metric); h != nil {
					h.InFlight += metric.GetGauge().GetValue()
				}
			case durationSeries:
				if h := get(metric); h != nil {
					h.addBuckets(metric.GetHistogram())
				}
			}
		}
	}
	return out
}

// addBuckets adds a histogram's cumulative buckets (and its +Inf count).
func (h *SlotHTTP) addBuckets(hist *dto.Histogram) {
	add := func(le string, n uint64) {
		for i := range h.Duration {
			if h.Duration[i].LE == le {
				h.Duration[i].Count += n
				return
			}
		}
		h.Duration = append(h.Duration, HTTPBucket{LE: le, Count: n})
	}
	for _, b := range hist.GetBucket() {
		if math.IsInf(b.GetUpperBound(), 1) {
			continue // added below, from the sample count
		}
		add(strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64), b.GetCumulativeCount())
	}
	add("+Inf", hist.GetSampleCount())
}
