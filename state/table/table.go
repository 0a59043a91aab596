package table

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// Sentinel errors. Errors returned by this package wrap them; test with
// errors.Is.
var (
	// ErrNotTable: the bytes are too short to hold a table header or do not
	// start with the table magic "PFKVTBL1".
	ErrNotTable = errors.New("table: not a key/value table")
	// ErrCorruptTable: the bytes start like a table but break the format
	// (unknown version, an offset out of bounds, unsorted keys, …). The
	// wrapping error says where.
	ErrCorruptTable = errors.New("table: corrupt key/value table")
)

// Table format constants; the package documentation describes the layout
// byte by byte.
const (
	// Magic is the first 8 bytes of every table.
	Magic = "PFKVTBL1"
	// Version is the only format version this package reads and writes.
	Version = 1

	headerSize = 32
	entrySize  = 24
	// maxField is the largest key or value length an entry can hold.
	maxField = math.MaxUint32
)

// le is stateless (an empty struct value); it only shortens the code.
var le = binary.LittleEndian

// Table is a read-only view of a key/value table, searched in place. It
// keeps the byte slice given to Open and copies nothing: every slice it
// returns points into that memory, so a Table over a Mapping must not be
// used, nor any returned slice kept, after the Mapping is closed.
//
// A Table is immutable and safe for concurrent use. Callers must not modify
// returned slices (over a Mapping, a write faults).
type Table struct {
	ents []byte // count entries of entrySize bytes
	data []byte // the data area
	n    int
}

// Open checks that b is a well-formed table (see the package
// documentation) and returns a view of it. Every header field, every offset
// and length (with overflow-safe arithmetic) and the order of every pair of
// neighbouring keys is checked once, in O(size of the entries + size of the
// keys), so that no later call on the Table can read out of bounds or panic.
//
// It returns (table, nil); or (nil, err) where err wraps ErrNotTable when b
// is too short for a header or has the wrong magic, and wraps
// ErrCorruptTable (naming the entry and the field) when anything else is
// wrong. b is kept, not copied, and must not change while the Table is used.
func Open(b []byte) (*Table, error) {
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w: missing magic %q", ErrNotTable, Magic)
	}
	if len(b) < headerSize {
		return nil, fmt.Errorf("%w: truncated header: %d bytes, need %d", ErrNotTable, len(b), headerSize)
	}
	if v := le.Uint32(b[8:]); v != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrCorruptTable, v, Version)
	}
	if f := le.Uint32(b[12:]); f != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrCorruptTable, f)
	}
	count := le.Uint64(b[16:])
	dataSize := le.Uint64(b[24:])
	rest := uint64(len(b) - headerSize)
	if count > rest/entrySize {
		return nil, fmt.Errorf("%w: %d entries do not fit in %d bytes", ErrCorruptTable, count, len(b))
	}
	entsEnd := headerSize + count*entrySize // ≤ len(b): no overflow
	if have := uint64(len(b)) - entsEnd; dataSize != have {
		return nil, fmt.Errorf("%w: data size %d, but %d bytes follow the %d entries", ErrCorruptTable, dataSize, have, count)
	}
	t := &Table{ents: b[headerSize:entsEnd:entsEnd], data: b[entsEnd:len(b):len(b)], n: int(count)}
	var prev []byte
	for i := range t.n {
		e := t.ents[i*entrySize : (i+1)*entrySize]
		ko, vo := le.Uint64(e[0:]), le.Uint64(e[8:])
		kl, vl := uint64(le.Uint32(e[16:])), uint64(le.Uint32(e[20:]))
		if err := checkSpan(i, "key", ko, kl, dataSize); err != nil {
			return nil, err
		}
		if err := checkSpan(i, "value", vo, vl, dataSize); err != nil {
			return nil, err
		}
		key := t.data[ko : ko+kl]
		if i > 0 && bytes.Compare(prev, key) >= 0 {
			return nil, fmt.Errorf("%w: entry %d: key %s does not sort after key %s of entry %d",
				ErrCorruptTable, i, quoteKey(key), quoteKey(prev), i-1)
		}
		prev = key
	}
	return t, nil
}

// checkSpan checks that [off, off+n) lies in a data area of size bytes,
// without computing off+n (which could overflow).
func checkSpan(i int, what string, off, n, size uint64) error {
	if off > size {
		return fmt.Errorf("%w: entry %d: %s offset %d beyond data size %d", ErrCorruptTable, i, what, off, size)
	}
	if n > size-off {
		return fmt.Errorf("%w: entry %d: %s of %d bytes at offset %d runs past data size %d", ErrCorruptTable, i, what, n, off, size)
	}
	return nil
}

// quoteKey quotes a key for an error message, cut to 64 bytes.
func quoteKey(k []byte) string {
	const max = 64
	if len(k) > max {
		return fmt.Sprintf("%q…", k[:max])
	}
	return fmt.Sprintf("%q", k)
}

// Len returns the number of entries.
func (t *Table) Len() int { return t.n }

// Key returns the key of entry i, 0 ≤ i < Len(); entries are in increasing
// key order. It panics if i is out of range, like a slice index. The result
// points into the table (cap = len) and must not be modified.
func (t *Table) Key(i int) []byte {
	e := t.ents[i*entrySize : (i+1)*entrySize]
	off, n := le.Uint64(e[0:]), uint64(le.Uint32(e[16:]))
	return t.data[off : off+n : off+n]
}

// Value returns the value of entry i, 0 ≤ i < Len(). It panics if i is out
// of range, like a slice index. The result points into the table (cap = len)
// and must not be modified.
func (t *Table) Value(i int) []byte {
	e := t.ents[i*entrySize : (i+1)*entrySize]
	off, n := le.Uint64(e[8:]), uint64(le.Uint32(e[20:]))
	return t.data[off : off+n : off+n]
}

// Search returns the index of key and true if the table holds key;
// otherwise the index where key would be inserted (0 ≤ i ≤ Len()) and
// false, as slices.BinarySearch does. It does not allocate.
func (t *Table) Search(key []byte) (int, bool) {
	lo, hi := 0, t.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := bytes.Compare(t.Key(m), key); {
		case c < 0:
			lo = m + 1
		case c > 0:
			hi = m
		default:
			return m, true
		}
	}
	return lo, false
}

// Get returns the value stored under key and true, or nil and false when
// the table has no such key (a present key may have an empty value). It
// does a binary search in place and does not allocate. The value points
// into the table (cap = len) and must not be modified.
func (t *Table) Get(key []byte) ([]byte, bool) {
	i, ok := t.Search(key)
	if !ok {
		return nil, false
	}
	return t.Value(i), true
}

// GetString is Get for a string key; it does not allocate either.
func (t *Table) GetString(key string) ([]byte, bool) {
	// The bytes of key are only read, never written or retained.
	return t.Get(unsafe.Slice(unsafe.StringData(key), len(key)))
}
