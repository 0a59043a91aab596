//go:build linux

package metrics

import (
	"math"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

func gatherOne(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func value(mf *dto.MetricFamily) float64 {
	m := mf.GetMetric()[0]
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// The cheap process collector exports what client_golang's does: the same
// families (name, help, type) with the same figures, within what changes
// between two readings.
func TestProcessCollectorMatchesClientGolang(t *testing.T) {
	c := newProcessCollector()
	if _, ok := c.(*processCollector); !ok {
		t.Fatalf("newProcessCollector fell back to client_golang's on Linux: %T", c)
	}
	std := gatherOne(t, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mine := gatherOne(t, c)
	if len(std) != len(mine) {
		t.Fatalf("%d families, client_golang has %d", len(mine), len(std))
	}
	for name, s := range std {
		m := mine[name]
		if m == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if m.GetHelp() != s.GetHelp() || m.GetType() != s.GetType() || len(m.GetMetric()) != 1 {
			t.Errorf("%s: help %q type %v (%d metrics), client_golang: %q %v", name, m.GetHelp(), m.GetType(), len(m.GetMetric()), s.GetHelp(), s.GetType())
			continue
		}
		a, b := value(m), value(s)
		var ok bool
		switch name {
		case "process_cpu_seconds_total":
			ok = math.Abs(a-b) < 0.5 // clock ticks against getrusage, a moment apart
		case "process_open_fds":
			ok = math.Abs(a-b) <= 2
		case "process_resident_memory_bytes", "process_virtual_memory_bytes":
			ok = math.Abs(a-b) <= 0.2*b
		case "process_network_receive_bytes_total", "process_network_transmit_bytes_total":
			ok = a <= b || a-b < 1<<20 // the namespace's traffic, read a moment apart
		default: // start time, limits
			ok = a == b
		}
		if !ok {
			t.Errorf("%s = %v, client_golang says %v", name, a, b)
		}
	}
}

// Open descriptors are counted, not guessed: opening files moves the figure.
func TestProcessCollectorCountsFDs(t *testing.T) {
	c := newProcessCollector().(*processCollector)
	before, ok := c.read()
	if !ok {
		t.Fatal("read failed")
	}
	var files []*os.File
	for range 5 {
		f, err := os.Open("/dev/null")
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	after, _ := c.read()
	for _, f := range files {
		f.Close()
	}
	if d := after.openFDs - before.openFDs; d != 5 {
		t.Errorf("open fds moved by %v after opening 5 files", d)
	}
}

func TestIPExtOctets(t *testing.T) {
	text := "TcpExt: SyncookiesSent X\nTcpExt: 0 1\nIpExt: InNoRoutes InOctets OutOctets\nIpExt: 3 1234 5678\n"
	in, out, ok := ipExtOctets([]byte(text))
	if !ok || in != 1234 || out != 5678 {
		t.Errorf("got %v %v %v, want 1234 5678 true", in, out, ok)
	}
	if _, _, ok := ipExtOctets([]byte("IpExt: InOctets OutOctets\nIpExt: 1\n")); ok {
		t.Error("a short value line was accepted")
	}
	if in, out, ok := ipExtOctets([]byte("TcpExt: A\nTcpExt: 1\n")); !ok || in != 0 || out != 0 {
		t.Error("no IpExt line: want zeros, as client_golang")
	}
}
