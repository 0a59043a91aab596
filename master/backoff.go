//go:build linux

package master

import (
	"math/rand/v2"
	"time"
)

// backoff returns the delay before restart number n (n ≥ 1) of a slot whose
// workers keep dying early: min·2^(n-1), capped at max, with ±20% jitter
// so that slots that died together do not restart in lockstep.
func backoff(n int, min, max time.Duration, rng *rand.Rand) time.Duration {
	if n < 1 {
		return 0
	}
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if rng != nil && d > 0 {
		j := time.Duration(rng.Int64N(int64(d)/5*2+1)) - d/5
		d += j
	}
	return d
}
