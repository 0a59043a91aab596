package table

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseTSV(t *testing.T) {
	long := strings.Repeat("v", 200<<10) // longer than bufio's 64 KiB buffer
	in := strings.Join([]string{
		"b\t2\r",           // CRLF
		"",                 // skipped
		"a\tone\ttwo",      // the value holds a TAB
		"\r",               // skipped
		"empty\t",          // empty value
		"long\t" + long,    // a long line
		"last\tno newline", // no final newline
	}, "\n")
	got, err := ParseTSV(iotest.OneByteReader(strings.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	want := []KV{
		{[]byte("b"), []byte("2")},
		{[]byte("a"), []byte("one\ttwo")},
		{[]byte("empty"), []byte("")},
		{[]byte("long"), []byte(long)},
		{[]byte("last"), []byte("no newline")},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d pairs, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Key, want[i].Key) || !bytes.Equal(got[i].Value, want[i].Value) {
			t.Errorf("pair %d = %.40q → %.40q, want %.40q → %.40q", i, got[i].Key, got[i].Value, want[i].Key, want[i].Value)
		}
	}
	// Pairs do not share memory with the reader's buffer: appending to a
	// key cannot overwrite its value.
	k := append(got[0].Key, 'X')
	if string(got[0].Value) != "2" || string(k) != "bX" {
		t.Error("a key's capacity reaches into its value")
	}

	tb, err := Open(mustBuild(t, got))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := tb.GetString("long"); !ok || string(v) != long {
		t.Error("the long value did not survive Build")
	}
}

func TestParseTSVEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "\n\r\n\n"} {
		got, err := ParseTSV(strings.NewReader(in))
		if err != nil || len(got) != 0 {
			t.Errorf("ParseTSV(%q) = %d pairs, %v, want none", in, len(got), err)
		}
	}
}

func TestParseTSVErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"missing tab", "a\t1\nb\t2\n\nc\t3\nd\t4\ne\t5\nno tab here\n", "table: tsv line 7: missing TAB between key and value"},
		{"missing tab at end", "a\t1\nb", "table: tsv line 2: missing TAB between key and value"},
		{"empty key", "a\t1\n\tvalue\n", "table: tsv line 2: empty key"},
		{"duplicate", "x\t1\na\t1\nb\t2\na\t3\nb\t4\n", `table: tsv line 4: duplicate key "a" (first on line 2)`},
		{"earliest duplicate wins", "b\t1\na\t1\na\t2\nb\t2\na\t3\n", `table: tsv line 3: duplicate key "a" (first on line 2)`},
		{"duplicate before bad line", "a\t1\na\t2\nbad\n", `table: tsv line 2: duplicate key "a" (first on line 1)`},
		{"bad line before duplicate", "a\t1\nbad\na\t2\n", "table: tsv line 2: missing TAB"},
		{"CRLF and LF lines", "a\t1\r\na\t2\n", `table: tsv line 2: duplicate key "a" (first on line 1)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTSV(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("ParseTSV succeeded with %d pairs", len(got))
			}
			if got != nil {
				t.Errorf("ParseTSV returned %d pairs with its error", len(got))
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
		})
	}
}

func TestParseTSVReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := ParseTSV(io.MultiReader(strings.NewReader("a\t1\nb\t"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %v, want boom on line 2", err)
	}
}

func mustBuild(t *testing.T, pairs []KV) []byte {
	t.Helper()
	b, err := Build(pairs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
