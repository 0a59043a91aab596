package table

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// smallPairs is a table's worth of pairs in no particular order, with an
// empty key and an empty value.
func smallPairs() []KV {
	return []KV{
		{Key: []byte("banana"), Value: []byte("yellow")},
		{Key: []byte("apple"), Value: []byte("red")},
		{Key: []byte(""), Value: []byte("the empty key")},
		{Key: []byte("cherry"), Value: []byte("")},
		{Key: []byte("apples"), Value: []byte("many")},
		{Key: []byte("\xff\x00binary"), Value: []byte{0, 1, 2}},
	}
}

func TestBuildOpenGet(t *testing.T) {
	pairs := smallPairs()
	b, err := Build(pairs)
	if err != nil {
		t.Fatal(err)
	}
	if string(pairs[0].Key) != "banana" {
		t.Error("Build reordered its argument")
	}
	tb, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Len() != len(pairs) {
		t.Fatalf("Len() = %d, want %d", tb.Len(), len(pairs))
	}
	for _, p := range pairs {
		v, ok := tb.Get(p.Key)
		if !ok || !bytes.Equal(v, p.Value) {
			t.Errorf("Get(%q) = %q, %v, want %q, true", p.Key, v, ok, p.Value)
		}
		if len(v) != cap(v) {
			t.Errorf("Get(%q): cap %d > len %d lets append overwrite the table", p.Key, cap(v), len(v))
		}
		if v, ok := tb.GetString(string(p.Key)); !ok || !bytes.Equal(v, p.Value) {
			t.Errorf("GetString(%q) = %q, %v", p.Key, v, ok)
		}
	}
	wantKeys := []string{"", "apple", "apples", "banana", "cherry", "\xff\x00binary"}
	for i, want := range wantKeys {
		if got := string(tb.Key(i)); got != want {
			t.Errorf("Key(%d) = %q, want %q", i, got, want)
		}
		if j, ok := tb.Search([]byte(want)); j != i || !ok {
			t.Errorf("Search(%q) = %d, %v, want %d, true", want, j, ok, i)
		}
	}
	if got := string(tb.Value(1)); got != "red" {
		t.Errorf("Value(1) = %q, want red", got)
	}

	for _, tc := range []struct {
		key string
		pos int
	}{
		{"\x00", 1}, {"a", 1}, {"appl", 1}, {"applesauce", 3}, {"b", 3},
		{"bananas", 4}, {"cherr", 4}, {"zzz", 5}, {"\xff\xff", 6},
	} {
		if v, ok := tb.Get([]byte(tc.key)); ok || v != nil {
			t.Errorf("Get(%q) = %q, %v, want nil, false", tc.key, v, ok)
		}
		if _, ok := tb.GetString(tc.key); ok {
			t.Errorf("GetString(%q) found a missing key", tc.key)
		}
		if pos, ok := tb.Search([]byte(tc.key)); pos != tc.pos || ok {
			t.Errorf("Search(%q) = %d, %v, want %d, false", tc.key, pos, ok, tc.pos)
		}
	}
}

func TestEmptyTable(t *testing.T) {
	b, err := Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != headerSize {
		t.Errorf("empty table is %d bytes, want %d", len(b), headerSize)
	}
	tb, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Len() != 0 {
		t.Errorf("Len() = %d", tb.Len())
	}
	for _, k := range []string{"", "a"} {
		if _, ok := tb.GetString(k); ok {
			t.Errorf("GetString(%q) found a key in an empty table", k)
		}
	}
}

func TestGetDoesNotAllocate(t *testing.T) {
	tb, err := Open(sampleTable(10_000))
	if err != nil {
		t.Fatal(err)
	}
	hit, miss := []byte("key-004242"), []byte("key-0042420")
	allocs := testing.AllocsPerRun(1000, func() {
		tb.Get(hit)
		tb.Get(miss)
		tb.GetString("key-000007")
		tb.GetString("nope")
		tb.Search(hit)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
}

func TestBuildTableDuplicate(t *testing.T) {
	pairs := append(smallPairs(), KV{Key: []byte("apple"), Value: []byte("green")})
	_, err := Build(pairs)
	if err == nil || !strings.Contains(err.Error(), `duplicate key "apple"`) {
		t.Errorf("Build error %v, want one naming the duplicate key", err)
	}
	if err := Write(new(bytes.Buffer), pairs); err == nil || !strings.Contains(err.Error(), `duplicate key "apple"`) {
		t.Errorf("Write error %v, want one naming the duplicate key", err)
	}
}

func TestWriteTableMatchesBuildTable(t *testing.T) {
	for _, pairs := range [][]KV{nil, smallPairs(), tableKVs(t, sampleTable(5000))} {
		want, err := Build(pairs)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := Write(&buf, pairs); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%d pairs: Write and Build differ", len(pairs))
		}
	}
}

type errWriter struct{ n int }

func (w *errWriter) Write(p []byte) (int, error) {
	if w.n < len(p) {
		return 0, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriteTableError(t *testing.T) {
	err := Write(&errWriter{n: 100 << 10}, tableKVs(t, sampleTable(5000)))
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Write error %v, want disk full", err)
	}
}

// tableKVs returns the pairs of table b.
func tableKVs(t testing.TB, b []byte) []KV {
	t.Helper()
	tb, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	kvs := make([]KV, tb.Len())
	for i := range kvs {
		kvs[i] = KV{Key: tb.Key(i), Value: tb.Value(i)}
	}
	return kvs
}

// corrupt returns a copy of the 3-entry table "a"→"1", "b"→"22", "c"→"333"
// changed by f.
func corrupt(f func(b []byte) []byte) []byte {
	b, err := Build([]KV{
		{Key: []byte("a"), Value: []byte("1")},
		{Key: []byte("b"), Value: []byte("22")},
		{Key: []byte("c"), Value: []byte("333")},
	})
	if err != nil {
		panic(err)
	}
	return f(b)
}

// ent returns entry i's bytes within table b.
func ent(b []byte, i int) []byte { return b[headerSize+i*entrySize:] }

func TestOpenTableRefusesCorruption(t *testing.T) {
	const data = 3 + 1 + 2 + 3 // bytes in the data area of corrupt's table
	tests := []struct {
		name string
		b    []byte
		is   error
		msg  string
	}{
		{"empty", nil, ErrNotTable, "missing magic"},
		{"shorter than magic", []byte("PFKVTBL"), ErrNotTable, "missing magic"},
		{"wrong magic", corrupt(func(b []byte) []byte { b[7] = '2'; return b }), ErrNotTable, "missing magic"},
		{"truncated header", corrupt(func(b []byte) []byte { return b[:20] }), ErrNotTable, "truncated header: 20 bytes, need 32"},
		{"version", corrupt(func(b []byte) []byte { le.PutUint32(b[8:], 2); return b }), ErrCorruptTable, "version 2, want 1"},
		{"flags", corrupt(func(b []byte) []byte { le.PutUint32(b[12:], 1); return b }), ErrCorruptTable, "unknown flags 0x1"},
		{"count too large", corrupt(func(b []byte) []byte { le.PutUint64(b[16:], 4); return b }), ErrCorruptTable, "4 entries do not fit in"},
		{"count huge", corrupt(func(b []byte) []byte { le.PutUint64(b[16:], 1<<61); return b }), ErrCorruptTable, "entries do not fit"},
		{"count max", corrupt(func(b []byte) []byte { le.PutUint64(b[16:], math.MaxUint64); return b }), ErrCorruptTable, "entries do not fit"},
		{"count too small", corrupt(func(b []byte) []byte { le.PutUint64(b[16:], 2); return b }), ErrCorruptTable, "data size 9, but 33 bytes follow the 2 entries"},
		{"data size too large", corrupt(func(b []byte) []byte { le.PutUint64(b[24:], data+1); return b }), ErrCorruptTable, "data size 10, but 9 bytes follow"},
		{"data size max", corrupt(func(b []byte) []byte { le.PutUint64(b[24:], math.MaxUint64); return b }), ErrCorruptTable, "but 9 bytes follow"},
		{"truncated data", corrupt(func(b []byte) []byte { return b[:len(b)-1] }), ErrCorruptTable, "data size 9, but 8 bytes follow"},
		{"truncated entries", corrupt(func(b []byte) []byte { return b[:headerSize+2*entrySize+5] }), ErrCorruptTable, "3 entries do not fit in 85 bytes"},
		{"trailing bytes", corrupt(func(b []byte) []byte { return append(b, 0) }), ErrCorruptTable, "data size 9, but 10 bytes follow"},
		{"key offset out of bounds", corrupt(func(b []byte) []byte { le.PutUint64(ent(b, 2)[0:], 123456); return b }), ErrCorruptTable, "entry 2: key offset 123456 beyond data size 9"},
		{"key offset max", corrupt(func(b []byte) []byte { le.PutUint64(ent(b, 0)[0:], math.MaxUint64); return b }), ErrCorruptTable, "entry 0: key offset 18446744073709551615 beyond data size 9"},
		{"value offset max", corrupt(func(b []byte) []byte { le.PutUint64(ent(b, 1)[8:], math.MaxUint64); return b }), ErrCorruptTable, "entry 1: value offset 18446744073709551615 beyond"},
		{"key runs past end", corrupt(func(b []byte) []byte { le.PutUint32(ent(b, 2)[16:], 2); le.PutUint64(ent(b, 2)[0:], data-1); return b }), ErrCorruptTable, "entry 2: key of 2 bytes at offset 8 runs past data size 9"},
		{"key length max", corrupt(func(b []byte) []byte { le.PutUint32(ent(b, 1)[16:], math.MaxUint32); return b }), ErrCorruptTable, "entry 1: key of 4294967295 bytes"},
		{"value runs past end", corrupt(func(b []byte) []byte { le.PutUint32(ent(b, 2)[20:], 4); return b }), ErrCorruptTable, "entry 2: value of 4 bytes at offset 6 runs past data size 9"},
		{"value offset at end", corrupt(func(b []byte) []byte { le.PutUint64(ent(b, 2)[8:], data); le.PutUint32(ent(b, 2)[20:], 1); return b }), ErrCorruptTable, "entry 2: value of 1 bytes at offset 9 runs past"},
		{"unsorted keys", corrupt(func(b []byte) []byte {
			e1, e2 := bytes.Clone(ent(b, 1)[:entrySize]), bytes.Clone(ent(b, 2)[:entrySize])
			copy(ent(b, 1), e2)
			copy(ent(b, 2), e1)
			return b
		}), ErrCorruptTable, `entry 2: key "b" does not sort after key "c" of entry 1`},
		{"duplicate keys", corrupt(func(b []byte) []byte { copy(ent(b, 2)[:entrySize], ent(b, 1)[:entrySize]); return b }), ErrCorruptTable, `entry 2: key "b" does not sort after key "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, err := Open(tt.b)
			if err == nil {
				t.Fatalf("Open accepted it (%d entries)", tb.Len())
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q lacks %q", err, tt.msg)
			}
		})
	}
	// The unchanged table is fine: each case above breaks one thing.
	if _, err := Open(corrupt(func(b []byte) []byte { return b })); err != nil {
		t.Fatal(err)
	}
}

func TestOpenTableAcceptsOverlap(t *testing.T) {
	// A reader accepts keys and values that share bytes.
	b := corrupt(func(b []byte) []byte {
		le.PutUint64(ent(b, 2)[8:], 0) // value of "c" = data[0:3] = "a1b"
		return b
	})
	tb, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := tb.GetString("c"); string(v) != "a1b" {
		t.Errorf(`Get("c") = %q, want "a1b"`, v)
	}
}

func ExampleTable_GetString() {
	b, err := Build([]KV{{Key: []byte("key-000042"), Value: []byte("the answer")}, {Key: []byte("b"), Value: []byte("c")}})
	if err != nil {
		panic(err)
	}
	tb, err := Open(b)
	if err != nil {
		panic(err)
	}
	v, ok := tb.GetString("key-000042")
	fmt.Printf("%d entries; %s %v\n", tb.Len(), v, ok)
	// Output: 2 entries; the answer true
}
