package aggregate

import (
	"slices"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

const (
	workerLabel         = "worker"
	exportedWorkerLabel = "exported_worker"
)

// carriedType maps a family type to the Series.Type it is carried as;
// ok is false for types that are not carried (gauges, untyped).
func carriedType(t dto.MetricType) (string, bool) {
	switch t {
	case dto.MetricType_COUNTER:
		return TypeCounter, true
	case dto.MetricType_HISTOGRAM:
		return TypeHistogram, true
	case dto.MetricType_SUMMARY:
		return TypeSummary, true
	}
	return "", false
}

func dtoType(t string) dto.MetricType {
	switch t {
	case TypeHistogram:
		return dto.MetricType_HISTOGRAM
	case TypeSummary:
		return dto.MetricType_SUMMARY
	}
	return dto.MetricType_COUNTER
}

// knownType reports whether the family type is one this package exports.
func knownType(t dto.MetricType) bool {
	_, ok := dto.MetricType_name[int32(t)]
	return ok
}

// famSnap is one family of a worker's snapshot with each series' identity
// worked out once, by the reader goroutine, off the scrape's critical path.
type famSnap struct {
	mf     *dto.MetricFamily
	series []seriesSnap
}

type seriesSnap struct {
	m      *dto.Metric
	key    string           // identity: name and labels without worker
	labels []*dto.LabelPair // exported labels, sorted, with worker="<slot>"
}

// prepare indexes a decoded snapshot of a worker in slot. Families of an
// unknown type and metrics with unusable labels are left out.
func prepare(slot int, mfs []*dto.MetricFamily) []famSnap {
	out := make([]famSnap, 0, len(mfs))
	wl := workerPair(slot)
	for _, mf := range mfs {
		if fs, ok := prepareFamily(wl, mf); ok {
			out = append(out, fs)
		}
	}
	return out
}

// workerPair is the label pair worker="<slot>".
func workerPair(slot int) *dto.LabelPair {
	return &dto.LabelPair{Name: new(workerLabel), Value: new(strconv.Itoa(slot))}
}

// prepareFamily indexes one family; ok is false if it is left out (empty,
// or of an unknown type).
func prepareFamily(wl *dto.LabelPair, mf *dto.MetricFamily) (famSnap, bool) {
	if len(mf.GetMetric()) == 0 || !knownType(mf.GetType()) {
		return famSnap{}, false
	}
	fs := famSnap{mf: mf, series: make([]seriesSnap, 0, len(mf.GetMetric()))}
	for _, m := range mf.GetMetric() {
		if m == nil {
			continue
		}
		if labels, key, ok := exportLabels(mf.GetName(), m.GetLabel(), wl); ok {
			fs.series = append(fs.series, seriesSnap{m: m, key: key, labels: labels})
		}
	}
	return fs, true
}

// exportLabels returns in (a metric's labels) sorted by name, with a
// "worker" label renamed "exported_worker" and wl (worker="<slot>") added,
// and the identity key (name and labels without wl). ok is false if names
// repeat.
func exportLabels(name string, in []*dto.LabelPair, wl *dto.LabelPair) (labels []*dto.LabelPair, key string, ok bool) {
	labels = make([]*dto.LabelPair, 0, len(in)+1)
	n := len(name)
	for _, l := range in {
		if l == nil {
			continue
		}
		if l.GetName() == workerLabel {
			l = &dto.LabelPair{Name: new(exportedWorkerLabel), Value: l.Value}
		}
		labels = append(labels, l)
		n += len(l.GetName()) + len(l.GetValue()) + 2
	}
	byName := func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) }
	if !slices.IsSortedFunc(labels, byName) {
		slices.SortFunc(labels, byName)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(name)
	for i, l := range labels {
		if i > 0 && labels[i-1].GetName() == l.GetName() {
			return nil, "", false
		}
		b.WriteString(labelSep)
		b.WriteString(l.GetName())
		b.WriteString(pairSep)
		b.WriteString(l.GetValue())
	}
	i, _ := slices.BinarySearchFunc(labels, wl, byName)
	return slices.Insert(labels, i, wl), b.String(), true
}

// valuesOf returns the carried values of m (of carried type typ).
func valuesOf(typ dto.MetricType, m *dto.Metric) Series {
	switch typ {
	case dto.MetricType_COUNTER:
		return Series{Value: Float(m.GetCounter().GetValue())}
	case dto.MetricType_HISTOGRAM:
		h := m.GetHistogram()
		s := Series{Count: h.GetSampleCount(), Sum: Float(h.GetSampleSum())}
		if bs := h.GetBucket(); len(bs) > 0 {
			s.Buckets = make([]Bucket, 0, len(bs))
			for _, b := range bs {
				s.Buckets = append(s.Buckets, Bucket{UpperBound: Float(b.GetUpperBound()), Count: b.GetCumulativeCount()})
			}
			slices.SortStableFunc(s.Buckets, func(a, b Bucket) int {
				switch {
				case a.UpperBound < b.UpperBound:
					return -1
				case a.UpperBound > b.UpperBound:
					return 1
				}
				return 0
			})
		}
		return s
	case dto.MetricType_SUMMARY:
		return Series{Count: m.GetSummary().GetSampleCount(), Sum: Float(m.GetSummary().GetSampleSum())}
	}
	return Series{}
}

// foldFamilies adds the carried values of a worker's snapshot into
// sets[slot].
func foldFamilies(sets map[int]seriesSet, slot int, snap []famSnap) {
	for _, fs := range snap {
		ct, ok := carriedType(fs.mf.GetType())
		if !ok {
			continue
		}
		set := sets[slot]
		if set == nil {
			set = make(seriesSet)
			sets[slot] = set
		}
		for _, ss := range fs.series {
			s := valuesOf(fs.mf.GetType(), ss.m)
			s.Name, s.Type, s.Help = fs.mf.GetName(), ct, fs.mf.GetHelp()
			if len(ss.labels) > 1 {
				s.Labels = make(map[string]string, len(ss.labels)-1)
				for _, l := range ss.labels {
					if l.GetName() != workerLabel {
						s.Labels[l.GetName()] = l.GetValue()
					}
				}
			}
			set.add(&s)
		}
	}
}

// merger builds the exported families of one scrape.
type merger struct {
	fams map[string]*famBuilder
}

type famBuilder struct {
	mf       *dto.MetricFamily
	reserved bool // the Aggregator's own family: sources are not merged in
	series   map[seriesID]*outSeries
}

type seriesID struct {
	slot int
	key  string
}

// outSeries is one exported series: the newest live source's metric (tmpl)
// and, once more than one source contributes, the sum of their values (acc).
type outSeries struct {
	labels []*dto.LabelPair // with the worker label
	tmpl   *dto.Metric      // newest live worker's metric; nil if only carried
	acc    Series
	n      int // sources whose values are summed
}

func newMerger() *merger { return &merger{fams: make(map[string]*famBuilder)} }

// family returns the builder for name, or nil if name is reserved or was
// first seen with another type (the first type seen wins).
func (mg *merger) family(name, help string, typ dto.MetricType) *famBuilder {
	fb := mg.fams[name]
	if fb == nil {
		fb = &famBuilder{
			mf:     &dto.MetricFamily{Name: new(name), Help: new(help), Type: typ.Enum()},
			series: make(map[seriesID]*outSeries),
		}
		mg.fams[name] = fb
		return fb
	}
	if fb.reserved || fb.mf.GetType() != typ {
		return nil
	}
	return fb
}

// reserve adds one of the Aggregator's own families.
func (mg *merger) reserve(mf *dto.MetricFamily) {
	mg.fams[mf.GetName()] = &famBuilder{mf: mf, reserved: true}
}

// addLive merges one family of a live worker in slot. Workers must be added
// oldest first: the newest one's gauges, quantiles and exemplars win.
func (mg *merger) addLive(slot int, fs famSnap) {
	typ := fs.mf.GetType()
	fb := mg.family(fs.mf.GetName(), fs.mf.GetHelp(), typ)
	if fb == nil {
		return
	}
	_, carried := carriedType(typ)
	for _, ss := range fs.series {
		id := seriesID{slot, ss.key}
		o := fb.series[id]
		if o == nil {
			fb.series[id] = &outSeries{labels: ss.labels, tmpl: ss.m, n: 1}
			continue
		}
		if carried {
			o.materialize(typ)
			v := valuesOf(typ, ss.m)
			o.acc.addValues(&v)
			o.n++
		}
		o.tmpl = ss.m
	}
}

// addCarried merges one carried series of slot.
func (mg *merger) addCarried(slot int, s *Series) {
	typ := dtoType(s.Type)
	fb := mg.family(s.Name, s.Help, typ)
	if fb == nil {
		return
	}
	key, labels := s.exported(slot)
	id := seriesID{slot, key}
	o := fb.series[id]
	if o == nil {
		o = &outSeries{labels: labels}
		fb.series[id] = o
	}
	o.materialize(typ)
	o.acc.addValues(s)
	o.n++
}

// materialize moves the single live source's values into acc before a
// second source is added.
func (o *outSeries) materialize(typ dto.MetricType) {
	if o.n == 1 && o.tmpl != nil {
		o.acc = valuesOf(typ, o.tmpl)
		o.acc.Buckets = slices.Clip(o.acc.Buckets) // never share with tmpl
	}
}

// metric builds the exported metric. It never writes through a pointer
// taken from a worker's snapshot (those are shared between scrapes).
func (o *outSeries) metric(typ dto.MetricType) *dto.Metric {
	out := &dto.Metric{Label: o.labels}
	t := o.tmpl
	if t != nil {
		out.TimestampMs = t.TimestampMs
	}
	summed := o.n > 1 || t == nil
	switch typ {
	case dto.MetricType_COUNTER:
		c := &dto.Counter{Value: new(float64(o.acc.Value))}
		if t != nil {
			c.Exemplar = t.GetCounter().GetExemplar()
			if !summed {
				c.Value = new(t.GetCounter().GetValue())
			}
		}
		out.Counter = c
	case dto.MetricType_HISTOGRAM:
		out.Histogram = o.histogram(summed)
	case dto.MetricType_SUMMARY:
		s := &dto.Summary{SampleCount: new(o.acc.Count), SampleSum: new(float64(o.acc.Sum))}
		if t != nil {
			ts := t.GetSummary()
			s.Quantile = ts.GetQuantile()
			if !summed {
				s.SampleCount, s.SampleSum = new(ts.GetSampleCount()), new(ts.GetSampleSum())
			}
		}
		out.Summary = s
	case dto.MetricType_GAUGE:
		out.Gauge = &dto.Gauge{Value: new(t.GetGauge().GetValue())}
	case dto.MetricType_UNTYPED:
		out.Untyped = &dto.Untyped{Value: new(t.GetUntyped().GetValue())}
	case dto.MetricType_GAUGE_HISTOGRAM:
		out.Histogram = o.histogram(false)
	}
	return out
}

func (o *outSeries) histogram(summed bool) *dto.Histogram {
	h := o.tmpl.GetHistogram()
	if !summed {
		return &dto.Histogram{
			SampleCount: h.SampleCount, SampleCountFloat: h.SampleCountFloat, SampleSum: h.SampleSum,
			Bucket: h.GetBucket(), Schema: h.Schema, ZeroThreshold: h.ZeroThreshold,
			ZeroCount: h.ZeroCount, ZeroCountFloat: h.ZeroCountFloat,
			NegativeSpan: h.GetNegativeSpan(), NegativeDelta: h.GetNegativeDelta(), NegativeCount: h.GetNegativeCount(),
			PositiveSpan: h.GetPositiveSpan(), PositiveDelta: h.GetPositiveDelta(), PositiveCount: h.GetPositiveCount(),
			Exemplars: h.GetExemplars(),
		}
	}
	// A sum: classic buckets only (native buckets are not carried).
	out := &dto.Histogram{SampleCount: new(o.acc.Count), SampleSum: new(float64(o.acc.Sum)), Exemplars: h.GetExemplars()}
	out.Bucket = make([]*dto.Bucket, len(o.acc.Buckets))
	for i, b := range o.acc.Buckets {
		out.Bucket[i] = &dto.Bucket{UpperBound: new(float64(b.UpperBound)), CumulativeCount: new(b.Count)}
	}
	return out
}

// result returns the families sorted by name, each one's metrics sorted by
// labels. Empty families are left out.
func (mg *merger) result() []*dto.MetricFamily {
	out := make([]*dto.MetricFamily, 0, len(mg.fams))
	for _, fb := range mg.fams {
		if fb.reserved {
			if len(fb.mf.GetMetric()) > 0 {
				out = append(out, fb.mf)
			}
			continue
		}
		if len(fb.series) == 0 {
			continue
		}
		typ := fb.mf.GetType()
		ms := make([]*dto.Metric, 0, len(fb.series))
		for _, o := range fb.series {
			ms = append(ms, o.metric(typ))
		}
		slices.SortFunc(ms, compareMetrics)
		fb.mf.Metric = ms
		out = append(out, fb.mf)
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// compareMetrics orders metrics by their label pairs (name, then value, in
// order), as client_golang does for metrics of one family.
func compareMetrics(a, b *dto.Metric) int {
	la, lb := a.GetLabel(), b.GetLabel()
	for i := 0; i < len(la) && i < len(lb); i++ {
		if c := strings.Compare(la[i].GetName(), lb[i].GetName()); c != 0 {
			return c
		}
		if c := strings.Compare(la[i].GetValue(), lb[i].GetValue()); c != 0 {
			return c
		}
	}
	return len(la) - len(lb)
}
