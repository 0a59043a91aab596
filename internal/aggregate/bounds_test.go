//go:build linux

package aggregate

import (
	"encoding/binary"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// A worker that keeps sending undecodable frames is cut off: after
// maxBadFrames in a row the master closes its socket.
func TestUndecodableFramesCutOff(t *testing.T) {
	agg := newAggregator(t, time.Second)
	m, p := newPeer(t)
	agg.Add(0, 100, m)
	garbage := []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3}
	for i := range maxBadFrames {
		var hdr [headerLen]byte
		binary.LittleEndian.PutUint64(hdr[:], uint64(i+1))
		binary.LittleEndian.PutUint32(hdr[8:], uint32(len(garbage)))
		if _, err := p.f.Write(append(hdr[:], garbage...)); err != nil {
			t.Fatalf("frame %d: %v", i+1, err)
		}
	}
	p.f.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	for {
		_, err := p.f.Read(buf)
		if err == io.EOF {
			return // cut off
		}
		if err != nil {
			t.Fatalf("the master did not close the socket: %v", err)
		}
	}
}

// The snapshots held for all workers together stay within MaxHeld: a
// frame that would exceed it is dropped and the previous copy kept.
func TestSnapshotBudget(t *testing.T) {
	a := NewAggregator(AggregatorOptions{Timeout: time.Second, MaxHeld: 4 << 10, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(a.Close)
	small := newTestMetrics()
	small.c.Add(7)
	startWorker(t, a, 0, 100, small.reg)
	gather(t, a)
	big := prometheus.NewRegistry()
	for i := range 200 {
		big.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "big_" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "_total", Help: "A counter among many."}))
	}
	startWorker(t, a, 1, 101, big)
	mfs := gather(t, a)
	a.held.mu.Lock()
	n := a.held.used
	a.held.mu.Unlock()
	if n > 4<<10 {
		t.Errorf("held %d bytes, limit %d", n, 4<<10)
	}
	var sawSmall, sawBig bool
	for _, mf := range mfs {
		switch name := mf.GetName(); {
		case name == "jobs_total":
			sawSmall = true
		case len(name) > 4 && name[:4] == "big_":
			sawBig = true
		}
	}
	if !sawSmall || sawBig {
		t.Errorf("small worker served %v (want true), big one %v (want false: over the budget)", sawSmall, sawBig)
	}
}

// Concurrent scrapes share one gather: 50 at once cost each worker far
// fewer than 50 answers.
func TestConcurrentScrapesCoalesce(t *testing.T) {
	agg := newAggregator(t, time.Second)
	var mu sync.Mutex
	asked := 0
	counting := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mu.Lock()
		asked++
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // a worker under load
		return newTestMetrics().reg.Gather()
	})
	startWorker(t, agg, 0, 100, counting)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := agg.Gather(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("50 concurrent scrapes: the worker answered %d times", asked)
	if asked > 10 {
		t.Errorf("the worker answered %d times for 50 concurrent scrapes", asked)
	}
}
