package aggregate

import (
	"context"
)

// Totals returns, per slot, what a successor master must carry: the slot's
// carry, the predecessor's last totals (while one is set), and the last seen
// counters, histograms and summary count/sum of the slot's live workers
// (summed when several live workers share a slot, as happens briefly during a
// replacement): the counter-like part of what Gather exports. It does not
// scrape the workers: call it after removing the workers (their
// final snapshots are then folded in) or after a Gather. The result is a new
// Carry that shares nothing with a.
func (a *Aggregator) Totals() *Carry {
	a.mu.Lock()
	defer a.mu.Unlock()
	sets := make(map[int]seriesSet)
	addSets(sets, a.carry)
	if a.pred != nil {
		addSets(sets, a.pred.last)
	}
	for _, w := range a.workers {
		foldFamilies(sets, w.slot, w.snapshot())
	}
	return carryOf(sets)
}

// LiveTotals is Totals of the live workers alone: no carry, no
// predecessor. Like Totals it does not scrape: call it after a Gather.
func (a *Aggregator) LiveTotals() *Carry {
	a.mu.Lock()
	defer a.mu.Unlock()
	sets := make(map[int]seriesSet)
	for _, w := range a.workers {
		foldFamilies(sets, w.slot, w.snapshot())
	}
	return carryOf(sets)
}

// AddCarry permanently adds c (a predecessor's final totals, or a piece of
// them from Split) into the per-slot carry. c is not modified nor retained;
// invalid series are dropped as by Carry.Merge. While a predecessor is set
// (SetPredecessor), the slots present in c are taken as that predecessor's
// final totals: its current totals for those slots stop being added, at the
// same instant, so that the exported values neither count them twice nor
// dip. A nil c does nothing.
func (a *Aggregator) AddCarry(c *Carry) {
	if c == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for slot, list := range c.Slots {
		set := a.carry[slot]
		if set == nil {
			set = make(seriesSet, len(list))
			a.carry[slot] = set
		}
		for _, s := range list {
			set.add(s)
		}
		if p := a.pred; p != nil {
			delete(p.last, slot)
			p.done[slot] = true
		}
	}
}

// SetPredecessor sets the function that returns the current Totals of a
// predecessor master that still runs (over the succession link between the two masters).
// From then on each Gather calls fn, with a context that ends after Timeout,
// at most one call at a time (a scrape that finds a call running waits for
// it, bounded by Timeout), and adds the totals it returned; if fn fails or
// is late, the last totals it returned are used. fn must honour ctx: Close
// waits for a running call.
//
// SetPredecessor(nil) stops that. The intended order at the end of an
// upgrade is AddCarry(final totals) (all pieces), then SetPredecessor(nil).
// Any slot whose final totals never came through AddCarry (a predecessor
// that died without handing them over) keeps the predecessor's last known
// totals, folded into the carry: a lower bound, so counters never go
// backwards. So never call SetPredecessor(nil) before AddCarry of the final
// totals: they would be counted twice. Setting a new fn while one is set
// does the same folding first.
func (a *Aggregator) SetPredecessor(fn func(ctx context.Context) (*Carry, error)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p := a.pred; p != nil {
		addSets(a.carry, p.last)
	}
	a.pred = nil
	if fn != nil {
		a.pred = &predecessor{fn: fn, last: make(map[int]seriesSet), done: make(map[int]bool)}
	}
}

// callPredecessorLocked starts a call of the predecessor's fn unless one is
// running, and returns a channel closed when that call returns; nil when
// there is no predecessor.
func (a *Aggregator) callPredecessorLocked() <-chan struct{} {
	p := a.pred
	if p == nil || a.closed {
		return nil
	}
	if p.call != nil {
		return p.call
	}
	call := make(chan struct{})
	p.call = call
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(call)
		ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
		c, err := p.fn(ctx)
		cancel()
		a.mu.Lock()
		defer a.mu.Unlock()
		p.call = nil
		if err != nil {
			a.log.Warn("metrics: predecessor totals unavailable, using the last ones", "err", err)
			return
		}
		if a.pred != p {
			return // superseded while fn ran
		}
		p.last = make(map[int]seriesSet)
		if c == nil {
			return
		}
		for slot, list := range c.Slots {
			if !p.done[slot] {
				p.last[slot] = newSeriesSet(list)
			}
		}
	}()
	return call
}

// Close closes every worker socket, stops the readers and waits for them
// and for a running predecessor call. Afterwards Gather and Totals still
// return the last copies and the carry, Add closes its file at once and
// Remove still folds. Calling it again does nothing.
func (a *Aggregator) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	for _, w := range a.workers {
		w.c.Close()
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// addSets adds every series of src into dst (copying).
func addSets(dst, src map[int]seriesSet) {
	for slot, set := range src {
		d := dst[slot]
		if d == nil {
			d = make(seriesSet, len(set))
			dst[slot] = d
		}
		for _, s := range set {
			d.add(s)
		}
	}
}

// carryOf turns per-slot sets into a Carry (sharing the sets' series).
func carryOf(sets map[int]seriesSet) *Carry {
	c := &Carry{Slots: make(map[int][]*Series, len(sets))}
	for slot, set := range sets {
		if len(set) > 0 {
			c.Slots[slot] = set.sorted()
		}
	}
	return c
}
