package sdnotify

import (
	"bytes"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Fields
	}{
		{"ready", "READY=1", Fields{Ready: true, Vars: map[string]string{"READY": "1"}}},
		{"ready with status", "READY=1\nSTATUS=Serving 3 clients",
			Fields{Ready: true, Status: "Serving 3 clients", Vars: map[string]string{"READY": "1", "STATUS": "Serving 3 clients"}}},
		{"watchdog", "WATCHDOG=1", Fields{Watchdog: true, Vars: map[string]string{"WATCHDOG": "1"}}},
		{"stopping", "STOPPING=1", Fields{Stopping: true, Vars: map[string]string{"STOPPING": "1"}}},
		{"reloading", "RELOADING=1\nMONOTONIC_USEC=123456",
			Fields{Reloading: true, Vars: map[string]string{"RELOADING": "1", "MONOTONIC_USEC": "123456"}}},
		{"mainpid only", "MAINPID=4242", Fields{Vars: map[string]string{"MAINPID": "4242"}}},
		{"ready not 1", "READY=yes", Fields{Vars: map[string]string{"READY": "yes"}}},
		{"trailing newline", "READY=1\n", Fields{Ready: true, Vars: map[string]string{"READY": "1"}}},
		{"empty value", "STATUS=", Fields{Vars: map[string]string{"STATUS": ""}}},
		{"equals in value", "STATUS=a=b", Fields{Status: "a=b", Vars: map[string]string{"STATUS": "a=b"}}},
		{"lowercase key kept, not acted on", "ready=1", Fields{Vars: map[string]string{"ready": "1"}}},
		{"lines without = skipped", "hello\nREADY=1\n\nworld",
			Fields{Ready: true, Vars: map[string]string{"READY": "1"}}},
		{"empty key skipped", "=1\nWATCHDOG=1", Fields{Watchdog: true, Vars: map[string]string{"WATCHDOG": "1"}}},
		{"bad keys skipped", "BAD KEY=1\nKEY-X=1\nK\u00c9Y=1\nREADY =1\n\x00=1\nSTOPPING=1",
			Fields{Stopping: true, Vars: map[string]string{"STOPPING": "1"}}},
		{"repeated status last wins", "STATUS=a\nSTATUS=b", Fields{Status: "b", Vars: map[string]string{"STATUS": "b"}}},
		{"repeated ready last wins", "READY=1\nREADY=0", Fields{Vars: map[string]string{"READY": "0"}}},
		{"repeated ready set again", "READY=0\nREADY=1", Fields{Ready: true, Vars: map[string]string{"READY": "1"}}},
		{"all flags", "READY=1\nRELOADING=1\nSTOPPING=1\nWATCHDOG=1\nSTATUS=x",
			Fields{Ready: true, Reloading: true, Stopping: true, Watchdog: true, Status: "x",
				Vars: map[string]string{"READY": "1", "RELOADING": "1", "STOPPING": "1", "WATCHDOG": "1", "STATUS": "x"}}},
		{"largest message", "STATUS=" + strings.Repeat("x", MaxMessage-len("STATUS=")),
			Fields{Status: strings.Repeat("x", MaxMessage-len("STATUS=")),
				Vars: map[string]string{"STATUS": strings.Repeat("x", MaxMessage-len("STATUS="))}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			assertFields(t, got, tt.want)
		})
	}
}

func assertFields(t *testing.T, got, want Fields) {
	t.Helper()
	if got.Ready != want.Ready || got.Reloading != want.Reloading || got.Stopping != want.Stopping ||
		got.Watchdog != want.Watchdog || got.Status != want.Status {
		t.Errorf("got flags %+v, want %+v", flagsOf(got), flagsOf(want))
	}
	if !maps.Equal(got.Vars, want.Vars) {
		t.Errorf("Vars = %q, want %q", got.Vars, want.Vars)
	}
}

func flagsOf(f Fields) Fields { f.Vars = nil; return f }

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nil", nil, ErrEmpty},
		{"empty", []byte{}, ErrEmpty},
		{"one byte too large", []byte("STATUS=" + strings.Repeat("x", MaxMessage+1-len("STATUS="))), ErrTooLarge},
		{"much too large", bytes.Repeat([]byte("READY=1\n"), 10000), ErrTooLarge},
		{"no equals", []byte("hello world"), ErrNoFields},
		{"only newlines", []byte("\n\n\n"), ErrNoFields},
		{"only empty keys", []byte("=1\n=2"), ErrNoFields},
		{"only bad keys", []byte("A B=1\nA-B=2\n\xff=3"), ErrNoFields},
		{"binary", []byte{0, 1, 2, 0xff, 0xfe, '\n', 0x80}, ErrNoFields},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%d bytes) error %v, want %v", len(tt.in), err, tt.want)
			}
			if got.Vars != nil || got.Ready || got.Status != "" {
				t.Errorf("Parse returned fields %+v with %v", got, err)
			}
		})
	}
}

func TestParseGarbageNeverPanics(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("AZaz09_=\n \x00\xff\xc3")
	for i := 0; i < 4000; i++ {
		b := make([]byte, r.IntN(MaxMessage+64))
		for j := range b {
			if i%2 == 0 {
				b[j] = byte(r.UintN(256))
			} else {
				b[j] = alphabet[r.IntN(len(alphabet))]
			}
		}
		checkParse(t, b)
		if t.Failed() {
			t.Fatalf("input %q", b)
		}
	}
}

// refParse is an independent, slower statement of what Parse must return
// for a message of acceptable size: the last assignment of each valid key.
func refParse(msg []byte) map[string]string {
	var vars map[string]string
	for _, line := range strings.Split(string(msg), "\n") {
		key, val, ok := strings.Cut(line, "=")
		if !ok || key == "" || strings.IndexFunc(key, func(r rune) bool {
			return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
		}) >= 0 {
			continue
		}
		if vars == nil {
			vars = map[string]string{}
		}
		vars[key] = val
	}
	return vars
}

// checkParse checks every property of Parse on msg; it must never panic.
func checkParse(t *testing.T, msg []byte) {
	t.Helper()
	orig := bytes.Clone(msg)
	f, err := Parse(msg)
	if !bytes.Equal(msg, orig) {
		t.Errorf("Parse modified its input")
	}
	switch {
	case len(msg) == 0:
		if !errors.Is(err, ErrEmpty) {
			t.Errorf("empty message: error %v, want ErrEmpty", err)
		}
		return
	case len(msg) > MaxMessage:
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("%d bytes: error %v, want ErrTooLarge", len(msg), err)
		}
		return
	}
	want := refParse(msg)
	if want == nil {
		if !errors.Is(err, ErrNoFields) {
			t.Errorf("no valid assignment: error %v, want ErrNoFields", err)
		}
		return
	}
	if err != nil {
		t.Errorf("error %v for a message with assignments %q", err, want)
		return
	}
	if !maps.Equal(f.Vars, want) {
		t.Errorf("Vars = %q, want %q", f.Vars, want)
	}
	if f.Ready != (want["READY"] == "1") || f.Reloading != (want["RELOADING"] == "1") ||
		f.Stopping != (want["STOPPING"] == "1") || f.Watchdog != (want["WATCHDOG"] == "1") ||
		f.Status != want["STATUS"] {
		t.Errorf("flags %+v disagree with Vars %q", flagsOf(f), f.Vars)
	}
	// Re-encoding the fields gives the same fields back.
	var lines []string
	for _, k := range slices.Sorted(maps.Keys(f.Vars)) {
		lines = append(lines, k+"="+f.Vars[k])
	}
	again, err := Parse([]byte(strings.Join(lines, "\n")))
	if err != nil || !maps.Equal(again.Vars, f.Vars) {
		t.Errorf("re-encoded %q parses to %q, %v", lines, again.Vars, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"READY=1",
		"READY=1\nSTATUS=serving",
		"WATCHDOG=1",
		"STOPPING=1\nSTATUS=draining",
		"RELOADING=1\nMONOTONIC_USEC=1",
		"no equals here",
		"STATUS=a\nSTATUS=b\nREADY=0\nREADY=1",
		"\x00\xff=\n=\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) { checkParse(t, msg) })
}
