package demo

import (
	"bytes"
	"fmt"
	"github.com/preforkd/preforkd/state"
	"github.com/preforkd/preforkd/state/table"
	"testing"
)

func TestTable(t *testing.T) {
	const n = 2000
	b := Table(n)
	if !bytes.Equal(b, Table(n)) {
		t.Fatal("Table is not deterministic")
	}
	tb, err := table.Open(b) // also checks that the keys are sorted
	if err != nil {
		t.Fatal(err)
	}
	if tb.Len() != n {
		t.Fatalf("Len() = %d, want %d", tb.Len(), n)
	}
	for i := range n {
		want := Pair(n, i)
		if !bytes.Equal(tb.Key(i), want.Key) || !bytes.Equal(tb.Value(i), want.Value) {
			t.Fatalf("entry %d = %q → %q, Pair gives %q → %q", i, tb.Key(i), tb.Value(i), want.Key, want.Value)
		}
		key := fmt.Sprintf("key-%06d", i)
		v, ok := tb.GetString(key)
		if !ok || !bytes.HasPrefix(v, []byte(fmt.Sprintf("value-%06d-", i))) || len(v) != 6+6+1+16 {
			t.Fatalf("GetString(%q) = %q, %v", key, v, ok)
		}
	}
	// Values pinned against an independent SplitMix64: mix(0) is its
	// well-known first output for seed 0.
	for _, tc := range []struct {
		i          int
		key, value string
	}{
		{0, "key-000000", "value-000000-e220a8397b1dcdaf"},
		{42, "key-000042", "value-000042-bdd732262feb6e95"},
		{999, "key-000999", "value-000999-68925370be18119c"},
	} {
		if string(tb.Key(tc.i)) != tc.key || string(tb.Value(tc.i)) != tc.value {
			t.Errorf("entry %d = %q → %q, want %q → %q", tc.i, tb.Key(tc.i), tb.Value(tc.i), tc.key, tc.value)
		}
	}
}

// TestDemoTablePinned pins the demo's bytes: the header, the first entry and
// the checksum (computed independently with Python's zlib.crc32).
func TestTablePinned(t *testing.T) {
	b := Table(1000)
	if len(b) != 63032 {
		t.Fatalf("Table(1000) is %d bytes, want 63032", len(b))
	}
	header := "PFKVTBL1" + "\x01\x00\x00\x00" + "\x00\x00\x00\x00" +
		"\xe8\x03\x00\x00\x00\x00\x00\x00" + // 1000 entries
		"\x58\x98\x00\x00\x00\x00\x00\x00" // 39000 bytes of data
	entry0 := "\x00\x00\x00\x00\x00\x00\x00\x00" + // key at 0
		"\x0a\x00\x00\x00\x00\x00\x00\x00" + // value at 10
		"\x0a\x00\x00\x00" + "\x1d\x00\x00\x00" // 10 and 29 bytes
	if got := string(b[:32+24]); got != header+entry0 {
		t.Errorf("header and entry 0:\n got %q\nwant %q", got, header+entry0)
	}
	if got := string(b[32+1000*24:][:39]); got != "key-000000value-000000-e220a8397b1dcdaf" {
		t.Errorf("data area starts with %q", got)
	}
	if got := state.Checksum(b); got != 0xa195a261 {
		t.Errorf("state.Checksum(Table(1000)) = %#x, want 0xa195a261", got)
	}
}

func TestTableEmpty(t *testing.T) {
	for _, n := range []int{0, -5} {
		tb, err := table.Open(Table(n))
		if err != nil || tb.Len() != 0 {
			t.Errorf("Table(%d): %v, want an empty table", n, err)
		}
	}
}

func TestKeyWidth(t *testing.T) {
	for _, tc := range []struct {
		n, i int
		key  string
	}{
		{1, 0, "key-000000"},
		{1_000_000, 999_999, "key-999999"},
		{1_000_001, 1_000_000, "key-1000000"},
		{1_000_001, 5, "key-0000005"},
		{20_000_000, 5, "key-00000005"},
	} {
		p := Pair(tc.n, tc.i)
		if string(p.Key) != tc.key {
			t.Errorf("Pair(%d, %d) key %q, want %q", tc.n, tc.i, p.Key, tc.key)
		}
		if want := "value-" + tc.key[4:] + "-"; !bytes.HasPrefix(p.Value, []byte(want)) {
			t.Errorf("Pair(%d, %d) value %q, want prefix %q", tc.n, tc.i, p.Value, want)
		}
	}
}

func TestPairPanics(t *testing.T) {
	for _, i := range []int{-1, 10} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Pair(10, %d) did not panic", i)
				}
			}()
			Pair(10, i)
		}()
	}
}

func BenchmarkTable(b *testing.B) {
	for b.Loop() {
		Table(100_000)
	}
}
