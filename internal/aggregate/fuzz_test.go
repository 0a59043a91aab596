//go:build linux

package aggregate

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// FuzzFrame feeds random bytes to the master's reader of a worker's
// stream, both raw and wrapped in a well-formed frame header; the reader
// and the merge must never panic nor produce an invalid exposition.
func FuzzFrame(f *testing.F) {
	m := newTestMetrics()
	m.c.Add(1)
	m.h.Observe(1)
	mfs, err := m.reg.Gather()
	if err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	if err := encodeFrame(&buf, 1, mfs); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes()[headerLen:], true)
	f.Add(buf.Bytes(), false)
	f.Add([]byte{}, false)
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, false)

	f.Fuzz(func(t *testing.T, data []byte, wrap bool) {
		agg := NewAggregator(AggregatorOptions{Timeout: 50 * time.Millisecond, Logger: discardLogger()})
		defer agg.Close()
		mf, wf := socketpair(t)
		agg.Add(0, 1, mf)
		stream := data
		if wrap {
			hdr := make([]byte, headerLen, headerLen+len(data))
			binary.LittleEndian.PutUint64(hdr, finalSeq)
			binary.LittleEndian.PutUint32(hdr[8:], uint32(len(data)))
			stream = append(hdr, data...)
		}
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			wf.Write(stream) // fails once the reader gave up: fine
			wf.Close()
		}()
		start := time.Now()
		agg.Remove(1)
		<-wrote
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Remove took %v", d)
		}
		out, err := agg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var text bytes.Buffer
		if err := encodeFrame(&text, 0, out); err != nil {
			t.Fatalf("merged output does not encode: %v", err)
		}
		if _, err := decodeFamilies(text.Bytes()[headerLen:]); err != nil {
			t.Fatalf("merged output does not decode: %v", err)
		}
		agg.Totals()
	})
}
