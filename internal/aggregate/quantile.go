package aggregate

import (
	"math"
	"sort"
)

// Quantile estimates the q-quantile of a histogram's cumulative buckets
// as Prometheus's histogram_quantile does: linearly within the bucket that
// holds it, and the highest finite bound when it falls in the +Inf bucket.
// NaN when the histogram is empty. buckets need not be sorted.
func Quantile(q float64, buckets []Bucket) float64 {
	b := append([]Bucket(nil), buckets...)
	sort.Slice(b, func(i, j int) bool { return b[i].UpperBound < b[j].UpperBound })
	if len(b) == 0 || b[len(b)-1].Count == 0 {
		return math.NaN()
	}
	rank := q * float64(b[len(b)-1].Count)
	prevLE, prevN := 0.0, 0.0
	for _, x := range b {
		le, n := float64(x.UpperBound), float64(x.Count)
		if n >= rank {
			if math.IsInf(le, 1) {
				return prevLE
			}
			if n == prevN {
				return le
			}
			return prevLE + (le-prevLE)*(rank-prevN)/(n-prevN)
		}
		prevLE, prevN = le, n
	}
	return prevLE
}

// SubBuckets is a - b by upper bound (a later reading minus an earlier one
// of the same cumulative histogram); bounds missing from b count 0.
func SubBuckets(a, b []Bucket) []Bucket {
	prev := make(map[Float]uint64, len(b))
	for _, x := range b {
		prev[x.UpperBound] = x.Count
	}
	out := make([]Bucket, len(a))
	for i, x := range a {
		n := x.Count
		if p := prev[x.UpperBound]; p <= n {
			n -= p
		} else {
			n = 0
		}
		out[i] = Bucket{UpperBound: x.UpperBound, Count: n}
	}
	return out
}
