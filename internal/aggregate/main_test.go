//go:build linux

package aggregate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// socketpair returns the master's and the worker's ends of a metrics socket.
func socketpair(t testing.TB) (master, worker *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "master"), os.NewFile(uintptr(fds[1]), "worker")
}

// peer is a hand-driven worker end: the test reads requests and writes
// frames itself.
type peer struct {
	t testing.TB
	f *os.File
}

func (p peer) readSeq() uint64 {
	p.t.Helper()
	var b [requestLen]byte
	if err := p.f.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.f.Read(b[:]); err != nil {
		p.t.Fatalf("read request: %v", err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

// noRequest asserts that no request is waiting within d.
func (p peer) noRequest(d time.Duration) {
	p.t.Helper()
	var b [requestLen]byte
	_ = p.f.SetReadDeadline(time.Now().Add(d))
	if n, err := p.f.Read(b[:]); err == nil {
		p.t.Fatalf("unexpected request of %d bytes: %x", n, b[:n])
	}
}

func (p peer) send(seq uint64, mfs ...*dto.MetricFamily) {
	p.t.Helper()
	var buf bytes.Buffer
	if err := encodeFrame(&buf, seq, mfs); err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.f.Write(buf.Bytes()); err != nil {
		p.t.Fatal(err)
	}
}

// newPeer returns the master's end of a new socketpair and a hand-driven
// peer on the other end (non-blocking, so its deadlines work).
func newPeer(t testing.TB) (*os.File, peer) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fds[1], true); err != nil {
		t.Fatal(err)
	}
	p := peer{t: t, f: os.NewFile(uintptr(fds[1]), "peer")}
	t.Cleanup(func() { p.f.Close() })
	return os.NewFile(uintptr(fds[0]), "master"), p
}

// testMetrics is a small worker registry: a counter, a gauge, a histogram.
type testMetrics struct {
	reg *prometheus.Registry
	c   prometheus.Counter
	g   prometheus.Gauge
	h   prometheus.Histogram
}

func newTestMetrics() testMetrics {
	m := testMetrics{
		reg: prometheus.NewRegistry(),
		c:   prometheus.NewCounter(prometheus.CounterOpts{Name: "jobs_total", Help: "Jobs done."}),
		g:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "queue_length", Help: "Jobs queued."}),
		h: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "job_duration_seconds", Help: "Time a job took.", Buckets: []float64{0.1, 1},
		}),
	}
	m.reg.MustRegister(m.c, m.g, m.h)
	return m
}

// startWorker runs a WorkerServer for g in slot/pid of agg over a real
// socketpair. The returned server is closed at cleanup (after a Close by
// the test, that does nothing).
func startWorker(t testing.TB, agg *Aggregator, slot, pid int, g prometheus.Gatherer) *WorkerServer {
	t.Helper()
	m, w := socketpair(t)
	agg.Add(slot, pid, m)
	s := NewWorkerServer(w, g)
	t.Cleanup(func() { s.Close() })
	return s
}

func newAggregator(t testing.TB, timeout time.Duration) *Aggregator {
	t.Helper()
	a := NewAggregator(AggregatorOptions{Timeout: timeout, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	t.Cleanup(a.Close)
	return a
}

func gather(t testing.TB, g prometheus.Gatherer) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	return mfs
}

// find returns the metric of family name with exactly labels, or nil.
func find(mfs []*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel())*2 != len(labels) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

// value returns a counter's or gauge's value, a histogram's or summary's
// count; it fails the test if the series is missing.
func value(t testing.TB, mfs []*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m := find(mfs, name, labels...)
	switch {
	case m == nil:
		t.Fatalf("no series %s%v in\n%s", name, labels, text(mfs))
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.Summary != nil:
		return float64(m.GetSummary().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// text renders families in the text format, for failure messages.
func text(mfs []*dto.MetricFamily) string {
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			fmt.Fprintf(&b, "# %v\n", err)
		}
	}
	return b.String()
}

func counterFamily(name string, v float64) *dto.MetricFamily {
	return &dto.MetricFamily{
		Name: new(name), Help: new("A counter."), Type: dto.MetricType_COUNTER.Enum(),
		Metric: []*dto.Metric{{Counter: &dto.Counter{Value: new(v)}}},
	}
}

// gatherAndCompare is testutil.GatherAndCompare without its go-cmp/godebug
// dependency (not in go.sum): it gathers g, keeps the families named, and
// compares their text exposition with want's (parsed and re-encoded, so
// only content matters).
func gatherAndCompare(g prometheus.Gatherer, want string, names ...string) error {
	got, err := g.Gather()
	if err != nil {
		return fmt.Errorf("gather: %w", err)
	}
	keep := func(name string) bool { return len(names) == 0 || slices.Contains(names, name) }
	var gotF []*dto.MetricFamily
	for _, mf := range got {
		if keep(mf.GetName()) {
			gotF = append(gotF, mf)
		}
	}
	p := expfmt.NewTextParser(model.UTF8Validation) // the zero value panics
	parsed, err := p.TextToMetricFamilies(strings.NewReader(want))
	if err != nil {
		return fmt.Errorf("parse want: %w", err)
	}
	var wantF []*dto.MetricFamily
	for _, mf := range parsed {
		if keep(mf.GetName()) {
			wantF = append(wantF, mf)
		}
	}
	slices.SortFunc(wantF, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	if g, w := text(gotF), text(wantF); g != w {
		return fmt.Errorf("exposition differs\n--- got:\n%s--- want:\n%s", g, w)
	}
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
