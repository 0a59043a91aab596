//go:build linux

package aggregate

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestFloatJSON(t *testing.T) {
	in := []Float{0, 1.5, -2, 1e300, 5e-324, Float(math.Inf(1)), Float(math.Inf(-1)), Float(math.NaN())}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out []Float
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	for i := range in {
		if in[i] != out[i] && !(math.IsNaN(float64(in[i])) && math.IsNaN(float64(out[i]))) {
			t.Errorf("%d: got %v, want %v (json %s)", i, out[i], in[i], b)
		}
	}
}

func TestAddBuckets(t *testing.T) {
	b := func(pairs ...float64) []Bucket {
		var out []Bucket
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, Bucket{UpperBound: Float(pairs[i]), Count: uint64(pairs[i+1])})
		}
		return out
	}
	inf := math.Inf(1)
	for _, tc := range []struct {
		name    string
		a, b    []Bucket
		want    []Bucket
		aliased bool
	}{
		{"same layout", b(1, 2, 5, 3), b(1, 1, 5, 4), b(1, 3, 5, 7), true},
		{"empty a", nil, b(1, 1), b(1, 1), false},
		{"empty b", b(1, 1), nil, b(1, 1), true},
		{"finer b", b(1, 2, 10, 4), b(1, 1, 5, 3, 10, 6), b(1, 3, 5, 5, 10, 10), false},
		{"disjoint", b(1, 2), b(2, 3, inf, 4), b(1, 2, 2, 5, inf, 6), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bb := append([]Bucket(nil), tc.b...)
			got := addBuckets(append([]Bucket(nil), tc.a...), tc.b)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if !reflect.DeepEqual(bb, tc.b) {
				t.Errorf("b modified: %v", tc.b)
			}
		})
	}
}

func TestTotalsSplitMergeJSON(t *testing.T) {
	a := newAggregator(t, time.Second)
	dead := newTestMetrics()
	s := startWorker(t, a, 0, 10, dead.reg)
	dead.c.Add(12)
	dead.h.Observe(0.05)
	dead.h.Observe(3)
	s.Close()
	a.Remove(10)
	live0 := newTestMetrics()
	startWorker(t, a, 0, 11, live0.reg)
	live0.c.Add(1)
	live1 := newTestMetrics()
	startWorker(t, a, 1, 12, live1.reg)
	live1.c.Add(4)
	live1.h.Observe(0.5)
	gather(t, a) // Totals uses the last copies

	tot := a.Totals()
	if n := len(tot.Slots); n != 2 {
		t.Fatalf("Totals has %d slots, want 2: %+v", n, tot)
	}
	b, err := json.Marshal(tot)
	if err != nil {
		t.Fatal(err)
	}
	var back Carry
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, tot) {
		t.Errorf("JSON round trip differs:\n got %s\nwant %s", mustJSON(&back), b)
	}

	pieces := tot.Split()
	if len(pieces) != 2 {
		t.Fatalf("Split gave %d pieces, want 2", len(pieces))
	}
	var merged Carry
	b2 := NewAggregator(AggregatorOptions{})
	defer b2.Close()
	for _, p := range pieces {
		var q Carry
		if err := json.Unmarshal([]byte(mustJSON(p)), &q); err != nil {
			t.Fatal(err)
		}
		merged.Merge(&q)
		b2.AddCarry(&q)
	}
	if !reflect.DeepEqual(&merged, tot) {
		t.Errorf("merged pieces differ:\n got %s\nwant %s", mustJSON(&merged), b)
	}
	if got := b2.Totals(); !reflect.DeepEqual(got, tot) {
		t.Errorf("successor's Totals differ:\n got %s\nwant %s", mustJSON(got), b)
	}

	// The successor exports what the predecessor did, without workers.
	want, got := gather(t, a), gather(t, b2)
	for _, slot := range []string{"0", "1"} {
		for _, name := range []string{"jobs_total", "job_duration_seconds"} {
			if w, g := value(t, want, name, "worker", slot), value(t, got, name, "worker", slot); w != g {
				t.Errorf("%s{worker=%s}: successor %v, predecessor %v", name, slot, g, w)
			}
		}
	}
	if got := value(t, got, "jobs_total", "worker", "0"); got != 13 {
		t.Errorf("jobs_total{worker=0} = %v, want 13", got)
	}

	// SplitSize bounds the JSON of each piece.
	var resized Carry
	const limit = 150
	pieces = tot.SplitSize(limit)
	if len(pieces) <= 2 {
		t.Errorf("SplitSize(%d) gave %d pieces, want more than the 2 slots: %s", limit, len(pieces), mustJSON(pieces))
	}
	for _, p := range pieces {
		if len(p.Slots) != 1 {
			t.Errorf("piece with %d slots", len(p.Slots))
		}
		if j := mustJSON(p); len(j) > limit && len(p.Slots[0])+len(p.Slots[1]) > 1 {
			t.Errorf("piece of %d bytes > %d: %s", len(j), limit, j)
		}
		var q Carry
		if err := json.Unmarshal([]byte(mustJSON(p)), &q); err != nil {
			t.Fatal(err)
		}
		resized.Merge(&q)
	}
	if !reflect.DeepEqual(&resized, tot) {
		t.Errorf("merged SplitSize pieces differ:\n got %s\nwant %s", mustJSON(&resized), b)
	}

	// Merge adds values of the same series.
	merged.Merge(tot)
	if got := merged.Slots[0][indexOf(t, merged.Slots[0], "jobs_total")].Value; got != 26 {
		t.Errorf("merged twice: jobs_total = %v, want 26", got)
	}
}

func indexOf(t *testing.T, list []*Series, name string) int {
	t.Helper()
	for i, s := range list {
		if s.Name == name {
			return i
		}
	}
	t.Fatalf("no series %s", name)
	return -1
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func carryOne(slot int, name string, v float64) *Carry {
	return &Carry{Slots: map[int][]*Series{slot: {{Name: name, Type: TypeCounter, Help: "Jobs done.", Value: Float(v)}}}}
}

// fakePredecessor is a predecessor master whose totals the test sets.
type fakePredecessor struct {
	mu   sync.Mutex
	cur  *Carry
	fail bool
	slow bool
}

func (f *fakePredecessor) set(c *Carry, fail, slow bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cur, f.fail, f.slow = c, fail, slow
}

func (f *fakePredecessor) totals(ctx context.Context) (*Carry, error) {
	f.mu.Lock()
	c, fail, slow := f.cur, f.fail, f.slow
	f.mu.Unlock()
	if slow {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if fail {
		return nil, errors.New("predecessor gone")
	}
	var out Carry
	out.Merge(c)
	return &out, nil
}

func TestPredecessor(t *testing.T) {
	const timeout = 100 * time.Millisecond
	a := newAggregator(t, timeout)
	m := newTestMetrics()
	startWorker(t, a, 0, 1, m.reg)
	m.c.Add(1)

	pred := &fakePredecessor{}
	cur := carryOne(0, "jobs_total", 10)
	cur.Merge(carryOne(5, "jobs_total", 2))
	pred.set(cur, false, false)
	a.SetPredecessor(pred.totals)

	check := func(step string, want0, want5 float64) {
		t.Helper()
		mfs := gather(t, a)
		if got := value(t, mfs, "jobs_total", "worker", "0"); got != want0 {
			t.Errorf("%s: jobs_total{worker=0} = %v, want %v", step, got, want0)
		}
		if got := value(t, mfs, "jobs_total", "worker", "5"); got != want5 {
			t.Errorf("%s: jobs_total{worker=5} = %v, want %v", step, got, want5)
		}
	}
	check("predecessor running", 11, 2)

	cur = carryOne(0, "jobs_total", 20)
	cur.Merge(carryOne(5, "jobs_total", 2))
	pred.set(cur, false, false)
	check("predecessor counted more", 21, 2)

	pred.set(nil, true, false)
	check("predecessor failing", 21, 2)

	pred.set(nil, false, true)
	start := time.Now()
	check("predecessor hanging", 21, 2)
	if d := time.Since(start); d > timeout+50*time.Millisecond {
		t.Errorf("scrape with a hanging predecessor took %v", d)
	}
	if got := a.Totals(); got.Slots[5][0].Value != 2 {
		t.Errorf("Totals without the predecessor's: %s", mustJSON(got))
	}

	// The predecessor exits: its final totals, in pieces, then nil. No
	// scrape in between counts them twice or misses them.
	final := carryOne(0, "jobs_total", 25)
	final.Merge(carryOne(5, "jobs_total", 3))
	pieces := final.Split()
	a.AddCarry(pieces[0])
	check("final totals of slot 0 only", 26, 2)
	a.AddCarry(pieces[1])
	check("all final totals", 26, 3)
	a.SetPredecessor(nil)
	check("predecessor gone", 26, 3)

	// A predecessor that dies without final totals: its last known ones
	// are kept.
	pred.set(carryOne(7, "jobs_total", 4), false, false)
	a.SetPredecessor(pred.totals)
	if got := value(t, gather(t, a), "jobs_total", "worker", "7"); got != 4 {
		t.Errorf("second predecessor: jobs_total{worker=7} = %v, want 4", got)
	}
	a.SetPredecessor(nil)
	if got := value(t, gather(t, a), "jobs_total", "worker", "7"); got != 4 {
		t.Errorf("after the predecessor vanished: jobs_total{worker=7} = %v, want 4", got)
	}
}
