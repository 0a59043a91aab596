package master

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"
)

// Worker output (Config.WorkerOutput): with "text" or "json", each worker's
// stdout and stderr come to the master through pipes, and every line is
// written to the master's own stream with the worker's slot, pid and
// generation. One sink per master stream writes from one goroutine; a
// worker's lines are queued without ever waiting: what does not fit in the
// queue is dropped and counted.

const (
	maxQueuedOutput = 4 << 20  // bytes of labelled lines a sink holds at most
	maxOutputLine   = 16 << 10 // a longer line is forwarded in pieces of this size
)

// outputSink writes labelled lines to one of the master's streams.
type outputSink struct {
	w       io.Writer
	name    string // "stdout" or "stderr"
	queue   chan []byte
	queued  atomic.Int64  // bytes in queue
	dropped atomic.Uint64 // bytes dropped, for the metric
	log     *slog.Logger
	done    chan struct{}
}

func newOutputSink(w io.Writer, name string, log *slog.Logger) *outputSink {
	s := &outputSink{w: w, name: name, queue: make(chan []byte, 4096), log: log, done: make(chan struct{})}
	go s.run()
	return s
}

func (s *outputSink) run() {
	defer close(s.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var reported uint64
	var buf []byte
	for {
		select {
		case b, ok := <-s.queue:
			if !ok {
				return
			}
			// Whatever else is queued goes in the same write (up to
			// 64 KiB): one system call per line would not keep up.
			batch := append(buf[:0], b...)
			for more := true; more && len(batch) < 64<<10; {
				select {
				case b, ok := <-s.queue:
					if !ok {
						more = false
						break
					}
					s.queued.Add(-int64(len(b)))
					batch = append(batch, b...)
				default:
					more = false
				}
			}
			s.queued.Add(-int64(len(b)))
			s.w.Write(batch)
			buf = batch
		case <-tick.C:
			if d := s.dropped.Load(); d > reported {
				s.log.Warn("dropped worker output: the master's "+s.name+" takes it more slowly than workers write", "bytes", d-reported)
				reported = d
			}
		}
	}
}

// put queues b, or drops it when the queue is full. It never waits.
func (s *outputSink) put(b []byte) {
	if s.queued.Load()+int64(len(b)) > maxQueuedOutput {
		s.dropped.Add(uint64(len(b)))
		return
	}
	select {
	case s.queue <- b:
		s.queued.Add(int64(len(b)))
	default:
		s.dropped.Add(uint64(len(b)))
	}
}

// close writes what is queued and ends the goroutine; no put may follow.
func (s *outputSink) close() {
	close(s.queue)
	<-s.done
}

// labeler is one worker stream's writer (os/exec copies the pipe into it
// from one goroutine): it splits lines and puts them, labelled, to a sink.
type labeler struct {
	sink          *outputSink
	json          bool
	stream        string
	gen           int
	slot          atomic.Int64 // -1 for a spare until promoted (setSlot)
	prefixSlot    int64        // the slot prefix was built for
	pid           atomic.Int64
	ready         chan struct{} // closed once pid is set (or the start failed)
	partial       []byte
	prefix, attrs []byte // built at the first line
}

func newLabeler(sink *outputSink, asJSON bool, stream string, slot, gen int) *labeler {
	l := &labeler{sink: sink, json: asJSON, stream: stream, gen: gen, ready: make(chan struct{})}
	l.slot.Store(int64(slot))
	return l
}

// setSlot labels the lines of a promoted spare with its slot from now on.
func (l *labeler) setSlot(slot int) { l.slot.Store(int64(slot)) }

// started sets the worker's pid (0 if the start failed).
func (l *labeler) started(pid int) {
	l.pid.Store(int64(pid))
	close(l.ready)
}

func (l *labeler) Write(p []byte) (int, error) {
	<-l.ready // set right after the start, before any line could matter
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxOutputLine - len(l.partial)
			if len(p) < room {
				l.partial = append(l.partial, p...)
				break
			}
			l.partial = append(l.partial, p[:room]...)
			p = p[room:]
			l.emit(l.partial)
			l.partial = l.partial[:0]
			continue
		}
		line := p[:i]
		if len(l.partial) > 0 {
			line = append(l.partial, line...)
		}
		l.emit(line)
		l.partial = l.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

// flush forwards an unterminated last line (after the worker's exit).
func (l *labeler) flush() {
	if len(l.partial) > 0 {
		l.emit(l.partial)
		l.partial = nil
	}
}

// emit forwards a line, in pieces of at most maxOutputLine bytes.
func (l *labeler) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	for len(line) > maxOutputLine {
		l.emitOne(line[:maxOutputLine])
		line = line[maxOutputLine:]
	}
	l.emitOne(line)
}

func (l *labeler) emitOne(line []byte) {
	if l.json {
		l.sink.put(l.jsonLine(line))
		return
	}
	if slot := l.slot.Load(); l.prefix == nil || slot != l.prefixSlot {
		l.prefixSlot = slot
		l.prefix = []byte("slot=" + strconv.FormatInt(slot, 10) + " pid=" + strconv.FormatInt(l.pid.Load(), 10) +
			" generation=" + strconv.Itoa(l.gen) + " stream=" + l.stream + " | ")
	}
	b := make([]byte, 0, len(l.prefix)+len(line)+1)
	b = append(append(append(b, l.prefix...), line...), '\n')
	l.sink.put(b)
}

// jsonLine keeps a worker's own JSON object, with the fields it lacks of
// slot, pid, generation and stream added; any other line becomes an object
// with it as "msg".
func (l *labeler) jsonLine(line []byte) []byte {
	fields := [][2]string{{"slot", strconv.FormatInt(l.slot.Load(), 10)}, {"pid", strconv.FormatInt(l.pid.Load(), 10)},
		{"generation", strconv.Itoa(l.gen)}, {"stream", strconv.Quote(l.stream)}}
	trimmed := bytes.TrimSpace(line)
	if len(trimmed) >= 2 && trimmed[0] == '{' && json.Valid(trimmed) {
		var add []byte
		for _, f := range fields {
			if !bytes.Contains(trimmed, []byte(`"`+f[0]+`":`)) {
				add = append(add, `"`+f[0]+`":`+f[1]+`,`...)
			}
		}
		body := bytes.TrimSpace(trimmed[1:])
		if len(body) == 1 { // "{}"
			add = bytes.TrimSuffix(add, []byte(","))
		}
		b := make([]byte, 0, len(trimmed)+len(add)+2)
		b = append(append(append(append(b, '{'), add...), body...), '\n')
		return b
	}
	msg, _ := json.Marshal(string(line)) // invalid UTF-8 becomes U+FFFD
	b := make([]byte, 0, len(line)+128)
	b = append(b, `{"time":"`+time.Now().UTC().Format(time.RFC3339Nano)+`","level":"INFO","msg":`...)
	b = append(b, msg...)
	for _, f := range fields {
		b = append(b, `,"`+f[0]+`":`+f[1]...)
	}
	return append(b, "}\n"...)
}
