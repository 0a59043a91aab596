package sdnotify

import (
	"bytes"
	"errors"
)

// MaxMessage is the largest datagram the receiving side accepts; a longer
// one is dropped (systemd's own limit is about the same order: 4 KiB of
// payload is far more than any real message).
const MaxMessage = 4096

// Fields is a parsed notification. Only the assignments preforkd acts on
// have their own field; every well-formed assignment is kept in Vars, the
// last one winning when a key repeats (systemd does the same).
type Fields struct {
	Ready     bool   // READY=1
	Reloading bool   // RELOADING=1
	Stopping  bool   // STOPPING=1
	Watchdog  bool   // WATCHDOG=1
	Status    string // STATUS=…
	Vars      map[string]string
}

// Errors returned by Parse.
var (
	ErrEmpty    = errors.New("sdnotify: empty message")
	ErrTooLarge = errors.New("sdnotify: message too large")
	ErrNoFields = errors.New("sdnotify: no KEY=VALUE assignment")
)

// Parse decodes one datagram. Lines without '=' or with an empty key, or with
// a key that is not ASCII letters, digits and '_', are skipped, as systemd
// skips them. It returns ErrEmpty, ErrTooLarge or ErrNoFields when the
// message carries nothing usable; otherwise a nil error and the fields.
func Parse(msg []byte) (Fields, error) {
	var f Fields
	if len(msg) == 0 {
		return f, ErrEmpty
	}
	if len(msg) > MaxMessage {
		return f, ErrTooLarge
	}
	for len(msg) > 0 {
		var line []byte
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			line, msg = msg, nil
		}
		eq := bytes.IndexByte(line, '=')
		if eq <= 0 || !validKey(line[:eq]) {
			continue
		}
		key, val := string(line[:eq]), string(line[eq+1:])
		if f.Vars == nil {
			f.Vars = make(map[string]string, 4)
		}
		f.Vars[key] = val
		switch key {
		case "READY":
			f.Ready = val == "1"
		case "RELOADING":
			f.Reloading = val == "1"
		case "STOPPING":
			f.Stopping = val == "1"
		case "WATCHDOG":
			f.Watchdog = val == "1"
		case "STATUS":
			f.Status = val
		}
	}
	if f.Vars == nil {
		return f, ErrNoFields
	}
	return f, nil
}

func validKey(k []byte) bool {
	for _, c := range k {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
		default:
			return false
		}
	}
	return true
}
