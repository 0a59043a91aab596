package master

import (
	"fmt"
	"time"
)

// CanaryConfig makes upgrades start with a canary: the new master starts
// one worker, which serves real traffic from the shared accept queue beside
// the old generation's workers for Duration; then the new master judges
// it against the old generation over the same window. It fails if it
// exited (or never became ready), or — for workers that export package
// metrics' HTTP series (Go workers serving through package server) — if
// its 5xx ratio or its p99 latency is too far above the old generation's.
// A pass starts the rest of the workers and the upgrade completes as
// usual; a failure drains the canary and the new master exits: the old
// master logs "upgrade rolled back: <reason>" and serves on, untouched.
type CanaryConfig struct {
	// Duration is how long the canary serves before it is judged. Zero:
	// no canary. It must be shorter than UpgradeTimeout, which covers the
	// whole start of the new master. `ctl reload -canary D` sets it for
	// one upgrade.
	Duration time.Duration
	// Max5xx is how many percentage points the canary's 5xx ratio may
	// exceed the old generation's by (1: 1.5% against 0.6% passes, 1.7%
	// fails). Zero: not at all.
	Max5xx float64
	// MinRequests is how many HTTP requests the canary must have served
	// for its figures to be judged; below it, only its exits count.
	// Defaults to 100.
	MinRequests int
	// MaxP99Ratio, when positive (at least 1), is how many times the old
	// generation's p99 latency the canary's may be. Zero: latency is not
	// judged.
	MaxP99Ratio float64
}

func (c *CanaryConfig) setDefaults() {
	if c.MinRequests == 0 {
		c.MinRequests = 100
	}
}

// validate checks c; d is a duration for one upgrade (ctl reload -canary),
// checked against the same bound.
func (c *CanaryConfig) validate(upgradeTimeout time.Duration) error {
	if err := validCanaryDuration(c.Duration, upgradeTimeout); err != nil {
		return err
	}
	if c.Max5xx < 0 || c.Max5xx > 100 {
		return fmt.Errorf("%w: -canary-max-5xx %g: want percentage points from 0 to 100", ErrConfig, c.Max5xx)
	}
	if c.MinRequests < 0 {
		return fmt.Errorf("%w: -canary-min-requests %d: must not be negative", ErrConfig, c.MinRequests)
	}
	if c.MaxP99Ratio < 0 || (c.MaxP99Ratio > 0 && c.MaxP99Ratio < 1) {
		return fmt.Errorf("%w: -canary-max-p99-ratio %g: want 0 (off) or at least 1", ErrConfig, c.MaxP99Ratio)
	}
	return nil
}

func validCanaryDuration(d, upgradeTimeout time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%w: -canary %v: must not be negative", ErrConfig, d)
	}
	if d > 0 && d >= upgradeTimeout {
		return fmt.Errorf("%w: -canary %v is not shorter than -upgrade-timeout %v, within which the new master must be ready, canary included: raise -upgrade-timeout", ErrConfig, d, upgradeTimeout)
	}
	return nil
}

func (c CanaryConfig) rule() canaryRule {
	return canaryRule{max5xx: c.Max5xx, minRequests: c.MinRequests, maxP99Ratio: c.MaxP99Ratio}
}
