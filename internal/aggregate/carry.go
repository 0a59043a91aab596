package aggregate

import (
	"encoding/json"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
)

// Kinds of carried series (Series.Type).
const (
	TypeCounter   = "counter"
	TypeHistogram = "histogram"
	TypeSummary   = "summary"
)

// Carry holds carried values per slot: what dead workers (of this master or
// of its predecessors) had counted. It is plain data: it marshals to JSON and
// back without loss (non-finite floats become the strings "NaN", "+Inf",
// "-Inf"). The zero value is an empty Carry. A Carry is not safe for
// concurrent use.
type Carry struct {
	// Slots maps a slot number to its series, sorted by name and labels,
	// at most one per identity (name and labels).
	Slots map[int][]*Series `json:"slots,omitempty"`
}

// Series is one carried series of one slot.
type Series struct {
	Name string `json:"name"`
	// Type is TypeCounter, TypeHistogram or TypeSummary.
	Type string `json:"type"`
	Help string `json:"help,omitempty"`
	// Labels are the series' labels, without the worker label.
	Labels map[string]string `json:"labels,omitempty"`
	// Value is a counter's value.
	Value Float `json:"value,omitempty"`
	// Count and Sum are a histogram's or summary's sample count and sum.
	Count uint64 `json:"count,omitempty"`
	Sum   Float  `json:"sum,omitempty"`
	// Buckets are a histogram's cumulative bucket counts, by increasing
	// upper bound.
	Buckets []Bucket `json:"buckets,omitempty"`

	// Set by exported, cleared by clone: the identity key and exported
	// labels for slot cacheSlot.
	cacheSlot  int
	cacheKey   string
	cacheLabel []*dto.LabelPair
}

// exported returns s's identity key and its exported labels (sorted, with
// worker="<slot>"), computed once per series and slot.
func (s *Series) exported(slot int) (string, []*dto.LabelPair) {
	if s.cacheLabel == nil || s.cacheSlot != slot {
		labels := make([]*dto.LabelPair, 0, len(s.Labels)+1)
		for k, v := range s.Labels {
			labels = append(labels, &dto.LabelPair{Name: new(k), Value: new(v)})
		}
		wl := &dto.LabelPair{Name: new(workerLabel), Value: new(strconv.Itoa(slot))}
		s.cacheLabel, s.cacheKey, _ = exportLabels(s.Name, labels, wl) // validSeries: no duplicates
		s.cacheSlot = slot
	}
	return s.cacheKey, s.cacheLabel
}

// Bucket is one cumulative histogram bucket.
type Bucket struct {
	UpperBound Float  `json:"le"`
	Count      uint64 `json:"count"`
}

// Float is a float64 whose JSON form also holds NaN and ±Inf (as strings).
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// UnmarshalJSON implements json.Unmarshaler; it accepts numbers and the
// strings "NaN", "+Inf", "-Inf" (and what strconv.ParseFloat accepts).
func (f *Float) UnmarshalJSON(b []byte) error {
	var v float64
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		p, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		v = p
	} else if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

// Split returns one Carry per slot, in increasing slot order, each holding
// that slot's series (shared with c, not copied), for a transport that limits
// the size of a message. Merging all pieces gives back c. An empty c gives
// nil.
func (c *Carry) Split() []*Carry {
	if c == nil {
		return nil
	}
	slots := make([]int, 0, len(c.Slots))
	for s := range c.Slots {
		slots = append(slots, s)
	}
	slices.Sort(slots)
	out := make([]*Carry, 0, len(slots))
	for _, s := range slots {
		out = append(out, &Carry{Slots: map[int][]*Series{s: c.Slots[s]}})
	}
	return out
}

// SplitSize is Split for a transport whose messages hold at most maxBytes:
// it returns pieces, in increasing slot order, each holding series of one
// slot only and marshalling to at most maxBytes of JSON, except a piece
// made of one series that alone is larger. A slot with many series spans
// several pieces; merging all pieces gives back c. Series are shared with
// c, not copied.
func (c *Carry) SplitSize(maxBytes int) []*Carry {
	var out []*Carry
	for _, whole := range c.Split() {
		for slot, list := range whole.Slots {
			// {"slots":{"<slot>":[…]}}: 15 bytes, the slot number, commas.
			base := 15 + len(strconv.Itoa(slot))
			size, start := base, 0
			for i, s := range list {
				b, err := json.Marshal(s)
				n := len(b) + 1
				if err != nil {
					n = maxBytes // cannot happen: Series always marshals
				}
				if i > start && size+n > maxBytes {
					out = append(out, &Carry{Slots: map[int][]*Series{slot: list[start:i:i]}})
					size, start = base, i
				}
				size += n
			}
			out = append(out, &Carry{Slots: map[int][]*Series{slot: list[start:len(list):len(list)]}})
		}
	}
	return out
}

// Merge adds o into c: values of series with the same identity (name and
// labels) in the same slot are added, others are copied. o is not modified
// nor shared. A series of o whose name or label names are invalid, that has a
// "worker" label, an unknown Type, or a Type different from the series of the
// same identity already in c, is dropped. A nil o does nothing.
func (c *Carry) Merge(o *Carry) {
	if o == nil || len(o.Slots) == 0 {
		return
	}
	if c.Slots == nil {
		c.Slots = make(map[int][]*Series, len(o.Slots))
	}
	for slot, list := range o.Slots {
		set := newSeriesSet(c.Slots[slot])
		for _, s := range list {
			set.add(s)
		}
		c.Slots[slot] = set.sorted()
	}
}

// seriesSet holds series by identity key.
type seriesSet map[string]*Series

func newSeriesSet(list []*Series) seriesSet {
	set := make(seriesSet, len(list))
	for _, s := range list {
		set.add(s)
	}
	return set
}

// add adds s's values into the set (copying s when it is new).
func (set seriesSet) add(s *Series) {
	if s == nil || !validSeries(s) {
		return
	}
	k := mapKey(s.Name, s.Labels)
	cur, ok := set[k]
	if !ok {
		set[k] = s.clone()
		return
	}
	if cur.Type == s.Type {
		cur.addValues(s)
	}
}

// sorted returns the set's series ordered by identity key.
func (set seriesSet) sorted() []*Series {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*Series, len(keys))
	for i, k := range keys {
		out[i] = set[k]
	}
	return out
}

func validSeries(s *Series) bool {
	switch s.Type {
	case TypeCounter, TypeHistogram, TypeSummary:
	default:
		return false
	}
	if !model.UTF8Validation.IsValidMetricName(s.Name) {
		return false
	}
	for k, v := range s.Labels {
		if k == workerLabel || !model.UTF8Validation.IsValidLabelName(k) || !model.LabelValue(v).IsValid() {
			return false
		}
	}
	return true
}

func (s *Series) clone() *Series {
	c := *s
	c.cacheSlot, c.cacheKey, c.cacheLabel = 0, "", nil
	if s.Labels != nil {
		c.Labels = make(map[string]string, len(s.Labels))
		for k, v := range s.Labels {
			c.Labels[k] = v
		}
	}
	c.Buckets = slices.Clone(s.Buckets)
	return &c
}

// addValues adds o's values into s (both of the same type).
func (s *Series) addValues(o *Series) {
	s.Value += o.Value
	s.Count += o.Count
	s.Sum += o.Sum
	s.Buckets = addBuckets(s.Buckets, o.Buckets)
}

// addBuckets returns the sum of two cumulative bucket lists, over the union
// of their upper bounds. At a bound one list lacks, that list counts the
// cumulative count of its next lower bound (0 below its first), which keeps
// the result cumulative. a may be reused; b is not modified.
func addBuckets(a, b []Bucket) []Bucket {
	if len(b) == 0 {
		return a
	}
	if len(a) == len(b) {
		same := true
		for i := range a {
			if a[i].UpperBound != b[i].UpperBound {
				same = false
				break
			}
		}
		if same {
			for i := range a {
				a[i].Count += b[i].Count
			}
			return a
		}
	}
	out := make([]Bucket, 0, len(a)+len(b))
	var i, j int
	var ca, cb uint64 // cumulative count of each list at the current bound
	for i < len(a) || j < len(b) {
		var ub Float
		switch {
		case j == len(b) || (i < len(a) && a[i].UpperBound < b[j].UpperBound):
			ub, ca = a[i].UpperBound, a[i].Count
			i++
		case i == len(a) || b[j].UpperBound < a[i].UpperBound:
			ub, cb = b[j].UpperBound, b[j].Count
			j++
		default: // equal bounds (or NaN, which sorts nowhere: take both)
			ub, ca, cb = a[i].UpperBound, a[i].Count, b[j].Count
			i++
			j++
		}
		out = append(out, Bucket{UpperBound: ub, Count: ca + cb})
	}
	return out
}

// labelSep and pairSep separate the parts of an identity key; neither byte
// can occur in valid UTF-8, so keys are unambiguous.
const (
	labelSep = "\xff"
	pairSep  = "\xfe"
)

// mapKey is the identity key of a series given as a label map.
func mapKey(name string, labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(name)
	for _, k := range names {
		b.WriteString(labelSep)
		b.WriteString(k)
		b.WriteString(pairSep)
		b.WriteString(labels[k])
	}
	return b.String()
}
