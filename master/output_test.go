package master

import (
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func labelled(t *testing.T, asJSON bool, writes ...string) []string {
	t.Helper()
	var out testutil.SyncBuffer
	sink := newOutputSink(&out, "stderr", quiet)
	l := newLabeler(sink, asJSON, "stderr", 2, 7)
	l.started(4242)
	for _, w := range writes {
		l.Write([]byte(w))
	}
	l.flush()
	sink.close()
	return strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
}

func TestLabelerText(t *testing.T) {
	got := labelled(t, false, "one\ntw", "o\nthree\r\n", "no newline at the end")
	want := []string{
		"slot=2 pid=4242 generation=7 stream=stderr | one",
		"slot=2 pid=4242 generation=7 stream=stderr | two",
		"slot=2 pid=4242 generation=7 stream=stderr | three",
		"slot=2 pid=4242 generation=7 stream=stderr | no newline at the end",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	long := labelled(t, false, strings.Repeat("x", maxOutputLine*2+5)+"\n")
	if len(long) != 3 {
		t.Errorf("a %d-byte line came out as %d lines, want 3 pieces", maxOutputLine*2+5, len(long))
	}
}

func TestLabelerJSON(t *testing.T) {
	got := labelled(t, true, `{"level":"INFO","msg":"own","pid":4242}`+"\n", "plain \"quoted\"\n", "{}\n", "{not json\n")
	if len(got) != 4 {
		t.Fatalf("%d lines: %q", len(got), got)
	}
	for i, line := range got {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not JSON: %q: %v", i, line, err)
		}
		if m["slot"] != 2.0 || m["pid"] != 4242.0 || m["generation"] != 7.0 || m["stream"] != "stderr" {
			t.Errorf("line %d lacks a label: %q", i, line)
		}
	}
	if strings.Count(got[0], `"pid"`) != 1 || !strings.Contains(got[0], `"msg":"own"`) {
		t.Errorf("the worker's own object: %q; want its fields kept, pid not repeated", got[0])
	}
	if !strings.Contains(got[1], `"msg":"plain \"quoted\""`) || !strings.Contains(got[3], `"msg":"{not json"`) {
		t.Errorf("plain lines: %q, %q", got[1], got[3])
	}
}

// blockedWriter never returns until released, like a master's stderr
// that nobody reads.
type blockedWriter struct{ release chan struct{} }

func (b blockedWriter) Write(p []byte) (int, error) { <-b.release; return len(p), nil }

// A worker never waits for a master whose stream is stuck: its lines are
// dropped and counted.
func TestOutputSinkNeverBlocks(t *testing.T) {
	bw := blockedWriter{release: make(chan struct{})}
	sink := newOutputSink(bw, "stderr", quiet)
	l := newLabeler(sink, false, "stderr", 0, 1)
	l.started(1)
	line := []byte(strings.Repeat("y", 1023) + "\n")
	began := time.Now()
	const n = 20_000 // 20 MiB: five times the queue's bound
	for i := 0; i < n; i++ {
		l.Write(line)
	}
	took := time.Since(began)
	dropped := sink.dropped.Load()
	close(bw.release)
	sink.close()
	t.Logf("%d lines written in %v against a stuck stream; %d bytes dropped", n, took, dropped)
	if dropped == 0 || dropped > uint64(n*(len(line)+50)) {
		t.Errorf("dropped %d bytes; want most of the %d written", dropped, n*len(line))
	}
	if took > 5*time.Second {
		t.Errorf("writing took %v: the worker waited for the master", took)
	}
}
