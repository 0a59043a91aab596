package table

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzOpenTable: Open never panics, refuses with one of the package's
// sentinel errors, and once it accepts a table, every accessor works on
// every entry and the table re-encodes to itself.
func FuzzOpenTable(f *testing.F) {
	f.Add([]byte(nil))
	f.Add(mustBuildF(f, nil))
	f.Add(mustBuildF(f, smallPairs()))
	f.Add(sampleTable(3))
	f.Add(corrupt(func(b []byte) []byte { return b[:len(b)-1] }))
	f.Fuzz(func(t *testing.T, b []byte) {
		tb, err := Open(b)
		if err != nil {
			if tb != nil {
				t.Fatal("Open returned a table with its error")
			}
			if !errors.Is(err, ErrNotTable) && !errors.Is(err, ErrCorruptTable) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		pairs := make([]KV, tb.Len())
		for i := range tb.Len() {
			k, v := tb.Key(i), tb.Value(i)
			if got, ok := tb.Get(k); !ok || !bytes.Equal(got, v) {
				t.Fatalf("Get(Key(%d)) = %q, %v, want %q", i, got, ok, v)
			}
			if j, ok := tb.Search(k); j != i || !ok {
				t.Fatalf("Search(Key(%d)) = %d, %v", i, j, ok)
			}
			if i > 0 && bytes.Compare(tb.Key(i-1), k) >= 0 {
				t.Fatalf("keys %d and %d out of order", i-1, i)
			}
			// A key just past this one is absent unless it is the next key.
			next := append(bytes.Clone(k), 0)
			if _, ok := tb.Get(next); ok && (i+1 == tb.Len() || !bytes.Equal(tb.Key(i+1), next)) {
				t.Fatalf("Get(%q) found a key that is not in the table", next)
			}
			pairs[i] = KV{Key: k, Value: v}
		}
		// Re-encoding gives a valid table with the same pairs.
		rebuilt, err := Build(pairs)
		if err != nil {
			t.Fatalf("Build of an accepted table's pairs: %v", err)
		}
		tb2, err := Open(rebuilt)
		if err != nil {
			t.Fatalf("Open of the re-encoded table: %v", err)
		}
		for i := range tb.Len() {
			if !bytes.Equal(tb2.Key(i), tb.Key(i)) || !bytes.Equal(tb2.Value(i), tb.Value(i)) {
				t.Fatalf("entry %d changed when re-encoded", i)
			}
		}
	})
}

func mustBuildF(f *testing.F, pairs []KV) []byte {
	b, err := Build(pairs)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
