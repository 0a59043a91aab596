package main

import (
	"math"
	"sort"
	"time"
)

// medianF is the median of v (0 for none).
func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// medianD is the median of d (0 for none).
func medianD(d []time.Duration) time.Duration { return pctD(d, 50) }

// pctD is the p-th percentile of d by the nearest-rank method (0 for none):
// with 20 values p99 is the largest, with 100 the 99th.
func pctD(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if p == 50 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}

// maxD is the largest of d.
func maxD(d []time.Duration) time.Duration {
	var m time.Duration
	for _, v := range d {
		m = max(m, v)
	}
	return m
}

// latencies are the latencies of the successful samples that pass keep.
func latencies(s []sample, keep func(sample) bool) []time.Duration {
	var out []time.Duration
	for _, x := range s {
		if x.ok && keep(x) {
			out = append(out, x.lat)
		}
	}
	return out
}

// failures counts the failed samples that pass keep.
func failures(s []sample, keep func(sample) bool) int {
	n := 0
	for _, x := range s {
		if !x.ok && keep(x) {
			n++
		}
	}
	return n
}

// within reports whether t is in one of the windows [at, at+d).
func within(t time.Duration, at []time.Duration, d time.Duration) bool {
	for _, a := range at {
		if t >= a && t < a+d {
			return true
		}
	}
	return false
}
