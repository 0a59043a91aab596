package listener

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	long := "/" + strings.Repeat("p", 106) // 107 bytes: the longest path that fits sun_path with its NUL
	tests := []struct {
		in   string
		want Spec
	}{
		{"http=tcp://127.0.0.1:8080", Spec{Name: "http", Network: "tcp", Address: "127.0.0.1:8080"}},
		{"any=tcp://:80", Spec{Name: "any", Network: "tcp", Address: ":80"}},
		{"v4=tcp4://127.0.0.1:0", Spec{Name: "v4", Network: "tcp4", Address: "127.0.0.1:0"}},
		{"v6=tcp6://[::1]:0", Spec{Name: "v6", Network: "tcp6", Address: "[::1]:0"}},
		{"host=tcp://localhost:65535", Spec{Name: "host", Network: "tcp", Address: "localhost:65535"}},
		{"admin=unix:///run/app.sock", Spec{Name: "admin", Network: "unix", Address: "/run/app.sock"}},
		{"rel=unix://app.sock", Spec{Name: "rel", Network: "unix", Address: "app.sock"}},
		{"abs=unix://@preforkd", Spec{Name: "abs", Network: "unix", Address: "@preforkd"}},
		{"long=unix://" + long, Spec{Name: "long", Network: "unix", Address: long}},
		{"dns=udp://127.0.0.1:5353", Spec{Name: "dns", Network: "udp", Address: "127.0.0.1:5353"}},
		{"A-z_0.9=udp://127.0.0.1:0", Spec{Name: "A-z_0.9", Network: "udp", Address: "127.0.0.1:0"}},
		{strings.Repeat("n", 255) + "=tcp://127.0.0.1:1", Spec{Name: strings.Repeat("n", 255), Network: "tcp", Address: "127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.want.Name[:min(len(tt.want.Name), 16)], func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("String() = %q, want %q", s, tt.in)
			}
			again, err := Parse(got.String())
			if err != nil || again != got {
				t.Errorf("Parse(String()) = %+v, %v; want %+v", again, err, got)
			}
			if got.Packet() != (got.Network == "udp") {
				t.Errorf("Packet() = %v for %q", got.Packet(), got.Network)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name, in string
		reason   string // a piece of the message that says what is wrong
	}{
		{"NUL in host", "x=tcp://a\x00b:80", "bad host"},
		{"newline in host", "x=tcp://127.0.0.1\n:80", "bad host"},
		{"control byte in udp host", "x=udp://\x01:1", "bad host"},
		{"no equals", "tcp://127.0.0.1:80", "NAME=SCHEME://ADDR"},
		{"empty", "", "NAME=SCHEME://ADDR"},
		{"empty name", "=tcp://127.0.0.1:80", "empty name"},
		{"space in name", "my app=tcp://127.0.0.1:80", "allowed"},
		{"slash in name", "a/b=tcp://127.0.0.1:80", "allowed"},
		{"colon in name", "a:b=tcp://127.0.0.1:80", "allowed"},
		{"non-ascii name", "caf\u00e9=tcp://127.0.0.1:80", "allowed"},
		{"name too long", strings.Repeat("n", 256) + "=tcp://127.0.0.1:80", "255"},
		{"no scheme separator", "http=tcp:127.0.0.1:80", "SCHEME://ADDR"},
		{"no scheme at all", "http=127.0.0.1:80", "SCHEME://ADDR"},
		{"unknown scheme", "http=http://127.0.0.1:80", "unknown scheme"},
		{"scheme case", "http=TCP://127.0.0.1:80", "unknown scheme"},
		{"udp4 unsupported", "dns=udp4://127.0.0.1:53", "unknown scheme"},
		{"missing port", "http=tcp://127.0.0.1", "HOST:PORT"},
		{"empty address", "http=tcp://", "HOST:PORT"},
		{"empty port", "http=tcp://127.0.0.1:", "port"},
		{"port too big", "http=tcp://127.0.0.1:99999", "65535"},
		{"negative port", "http=tcp://127.0.0.1:-1", "65535"},
		{"named port", "http=tcp://127.0.0.1:http", "65535"},
		{"udp named port", "dns=udp://127.0.0.1:domain", "65535"},
		{"v6 without brackets", "v6=tcp6://::1:80", "HOST:PORT"},
		{"slash in host", "http=tcp://a/b:80", "bad host"},
		{"empty unix path", "s=unix://", "empty unix socket path"},
		{"empty abstract name", "s=unix://@", "empty unix socket path"},
		{"unix path too long", "s=unix:///" + strings.Repeat("p", 107), "107"},
		{"abstract too long", "s=unix://@" + strings.Repeat("p", 107), "107"},
		{"NUL in unix path", "s=unix:///tmp/a\x00b", "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.in, got)
			}
			if !errors.Is(err, ErrSpec) {
				t.Errorf("Parse(%q) error %v does not wrap ErrSpec", tt.in, err)
			}
			if q := strconv.Quote(tt.in); !strings.Contains(err.Error(), q) {
				t.Errorf("Parse(%q) error %q does not quote the whole value %s", tt.in, err, q)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("Parse(%q) error %q does not say %q", tt.in, err, tt.reason)
			}
			if got != (Spec{}) {
				t.Errorf("Parse(%q) returned %+v with its error, want the zero Spec", tt.in, got)
			}
		})
	}
}

func TestValidateSet(t *testing.T) {
	mk := func(ins ...string) []Spec {
		var specs []Spec
		for _, in := range ins {
			sp, err := Parse(in)
			if err != nil {
				t.Fatal(err)
			}
			specs = append(specs, sp)
		}
		return specs
	}
	if err := ValidateSet(nil); err != nil {
		t.Errorf("ValidateSet(nil) = %v", err)
	}
	if err := ValidateSet(mk("a=tcp://127.0.0.1:1", "b=udp://127.0.0.1:1", "c=unix:///x")); err != nil {
		t.Errorf("distinct names: %v", err)
	}
	err := ValidateSet(mk("a=tcp://127.0.0.1:1", "b=udp://127.0.0.1:2", "a=unix:///x"))
	if !errors.Is(err, ErrSpec) {
		t.Fatalf("duplicate names: got %v, want an error wrapping ErrSpec", err)
	}
	for _, want := range []string{`"a=unix:///x"`, `name "a" used twice`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("duplicate names: error %q does not contain %s", err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"http=tcp://127.0.0.1:8080",
		"v6=tcp6://[::1]:0",
		"admin=unix:///run/app.sock",
		"abs=unix://@name",
		"dns=udp://127.0.0.1:5353",
		"x=tcp://127.0.0.1:99999",
		"a:b=tcp://:1",
		"=unix://",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sp, err := Parse(in)
		if err != nil {
			if !errors.Is(err, ErrSpec) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrSpec", in, err)
			}
			if !strings.Contains(err.Error(), strconv.Quote(in)) {
				t.Fatalf("Parse(%q) error %q does not quote the input", in, err)
			}
			return
		}
		if sp.Name == "" || strings.ContainsAny(sp.Name, ":=") {
			t.Fatalf("Parse(%q) accepted name %q, which cannot go into LISTEN_FDNAMES", in, sp.Name)
		}
		switch sp.Network {
		case "tcp", "tcp4", "tcp6", "udp", "unix":
		default:
			t.Fatalf("Parse(%q) accepted network %q", in, sp.Network)
		}
		if sp.String() != in {
			t.Fatalf("Parse(%q).String() = %q, want the input back", in, sp.String())
		}
		again, err := Parse(sp.String())
		if err != nil {
			t.Fatalf("Parse(%q) ok, but Parse(String() = %q): %v", in, sp.String(), err)
		}
		if again != sp {
			t.Fatalf("round trip of %q: got %+v, want %+v", in, again, sp)
		}
	})
}
