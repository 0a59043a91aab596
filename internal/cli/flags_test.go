package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"512MiB": 512 << 20, "2G": 2 << 30, "100m": 100 << 20, "4096": 4096, "1.5GiB": 3 << 29, "64KB": 64 << 10,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1G", "12X", "1TB", "0"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(testProgram, []string{"-workers", "3", "-listen", "a=tcp://127.0.0.1:1", "-listen", "b=udp://127.0.0.1:2", "-max-rss", "1G", "--", "cmd", "arg"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.workers != 3 || len(o.specs) != 2 || o.specs[1].Network != "udp" || o.maxRSSBytes != 1<<30 || strings.Join(o.command, " ") != "cmd arg" {
		t.Errorf("parsed %+v", o)
	}
	d, err := parseFlags(testProgram, nil, io.Discard)
	if err != nil || len(d.specs) != 1 || d.specs[0].String() != "http=tcp://127.0.0.1:8080" || d.metrics != "127.0.0.1:9100" {
		t.Errorf("defaults: %+v %v", d, err)
	}
	for _, c := range []struct{ args, want string }{
		{"-workers 0", "-workers 0"},
		{"-listen nope", `"nope"`},
		{"-metrics 127.0.0.1", `-metrics "127.0.0.1"`},
		{"-max-rss lots", `-max-rss "lots"`},
		{"-max-requests -1", "-max-requests -1"},
		{"-log-format yaml", `"yaml"`},
		{"-log-level loud", `"loud"`},
		{"-user no-such-user-here", `"no-such-user-here"`},
		{"-state /no/such/file", "/no/such/file"},
		{"-bogus", "-bogus"},
	} {
		_, err := parseFlags(testProgram, strings.Fields(c.args), io.Discard)
		var ue usageError
		if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want a usage error naming %s", c.args, err, c.want)
		}
	}
	var help strings.Builder
	if _, err := parseFlags(testProgram, []string{"-h"}, &help); !errors.Is(err, flag.ErrHelp) || !strings.Contains(help.String(), "-max-rss") {
		t.Errorf("-h: %v, %q", err, help.String())
	}
}

func TestLookupCredential(t *testing.T) {
	if os.Geteuid() != 0 {
		if _, err := lookupCredential("nobody", ""); err == nil {
			t.Error("a non-root master accepted -user nobody")
		}
		return
	}
	c, err := lookupCredential("nobody", "")
	if err != nil || c.UID == 0 || c.GID == 0 {
		t.Errorf("nobody: %+v %v", c, err)
	}
	if c, err := lookupCredential("65534", "0"); err != nil || c.UID != 65534 || c.GID != 0 {
		t.Errorf("numeric: %+v %v", c, err)
	}
}

var testProgram = Program{Name: "preforkd", Version: "test"}

// A large -state load is logged after its first chunk, then at most once
// a second, and at its end with the time it took; a small one is not.
func TestLoadProgressLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	began := time.Now()
	p := loadProgress("/data/big", log, began)
	const size = 256 << 20
	p(64<<20, size)  // first chunk: logged
	p(128<<20, size) // within a second: not
	p(size, size)    // done
	out := buf.String()
	if n := strings.Count(out, `msg="loading the state"`); n != 1 {
		t.Errorf("%d progress lines, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, `msg="state loaded" path=/data/big size=268435456 took=`) {
		t.Errorf("no end line:\n%s", out)
	}
	buf.Reset()
	small := loadProgress("/data/small", log, began)
	small(1<<20, 1<<20)
	if buf.Len() != 0 {
		t.Errorf("a small state's load was logged: %s", buf.String())
	}
}

func TestProgramParse(t *testing.T) {
	cfg, err := testProgram.Parse([]string{"-workers=3", "-grace=20s", "-control=/run/x.sock", "-metrics=0.0.0.0:9100"})
	if err != nil || cfg.Workers != 3 || cfg.Grace != 20*time.Second || cfg.MetricsAddr != "0.0.0.0:9100" {
		t.Errorf("Parse: %+v, %v", cfg, err)
	}
	if _, err := testProgram.Parse([]string{"-control=/run/x.sock", "-grace=0s"}); err == nil || !strings.Contains(err.Error(), "-grace") {
		t.Errorf("Parse of -grace=0s: %v; want an error naming -grace", err)
	}
}

// Every flag of the command line is documented in the README's flag table.
func TestEveryFlagInREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var usage bytes.Buffer
	if _, err := parseFlags(Program{Name: "preforkd"}, []string{"-h"}, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	n := 0
	for _, line := range strings.Split(usage.String(), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "-") || !strings.HasPrefix(line, "  -") {
			continue
		}
		n++
		if name := f[0]; !bytes.Contains(readme, []byte("| `"+name)) && !bytes.Contains(readme, []byte("`, `"+name)) {
			t.Errorf("flag %s is not in the README's flag table", name)
		}
	}
	if n < 20 {
		t.Fatalf("only %d flags found in the usage text: the test reads it wrong\n%s", n, usage.String())
	}
}
