package master

import (
	"bytes"
	"io"
	"strings"
)

// maxLastLine bounds the line a lastLine keeps.
const maxLastLine = 512

// lastLine passes everything written to w and keeps the last non-empty
// line (at most maxLastLine bytes of it). Not safe for concurrent writes:
// os/exec copies a child's output from one goroutine, and String is read
// after Wait.
type lastLine struct {
	w    io.Writer
	cur  []byte // the line being written
	last string // the last complete line
}

func (l *lastLine) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	for rest := p; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			l.add(rest)
			break
		}
		l.add(rest[:i])
		if s := strings.TrimSpace(string(l.cur)); s != "" {
			l.last = s
		}
		l.cur = l.cur[:0]
		rest = rest[i+1:]
	}
	return n, err
}

func (l *lastLine) add(b []byte) {
	if room := maxLastLine - len(l.cur); room > 0 {
		l.cur = append(l.cur, b[:min(len(b), room)]...)
	}
}

// String is the last line: an unterminated last line if there is one,
// else the last complete one.
func (l *lastLine) String() string {
	if s := strings.TrimSpace(string(l.cur)); s != "" {
		return s
	}
	return l.last
}
