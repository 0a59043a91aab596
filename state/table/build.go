package table

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
)

// KV is one key/value pair given to Build or Write, or returned by
// ParseTSV.
type KV struct {
	Key, Value []byte
}

// Build returns the table (see the package documentation) holding
// pairs, sorted by key. pairs itself is neither reordered nor retained.
//
// It returns (table, nil), or (nil, err) when two pairs have the same key
// (the error quotes the key), when a key or value is 4 GiB or longer, or
// when the table would not fit in memory. No pairs give a valid empty table.
func Build(pairs []KV) ([]byte, error) {
	sorted, dataSize, err := prepare(pairs)
	if err != nil {
		return nil, err
	}
	entsEnd := headerSize + len(sorted)*entrySize
	b := make([]byte, entsEnd+int(dataSize))
	putHeader(b, len(sorted), dataSize)
	data := b[entsEnd:]
	off := 0
	for i, p := range sorted {
		putEntry(b[headerSize+i*entrySize:], off, len(p.Key), len(p.Value))
		off += copy(data[off:], p.Key)
		off += copy(data[off:], p.Value)
	}
	return b, nil
}

// Write writes to w the same bytes that Build returns, without
// holding a second copy of the keys and values in memory. It blocks in
// w.Write.
//
// It returns nil once every byte was written; otherwise the error from
// Build's checks (nothing is written then) or the first write error
// (w may then hold a partial table).
func Write(w io.Writer, pairs []KV) error {
	sorted, dataSize, err := prepare(pairs)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var buf [headerSize]byte
	putHeader(buf[:], len(sorted), dataSize)
	bw.Write(buf[:]) // a bufio.Writer keeps the first error and returns it from Flush
	off := 0
	for _, p := range sorted {
		putEntry(buf[:entrySize], off, len(p.Key), len(p.Value))
		bw.Write(buf[:entrySize])
		off += len(p.Key) + len(p.Value)
	}
	for _, p := range sorted {
		bw.Write(p.Key)
		bw.Write(p.Value)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("table: write table: %w", err)
	}
	return nil
}

// prepare returns a sorted copy of pairs and the size of their data area,
// or an error for a duplicate key, an oversized field or an oversized table.
func prepare(pairs []KV) ([]KV, uint64, error) {
	sorted := slices.Clone(pairs)
	slices.SortFunc(sorted, func(a, b KV) int { return bytes.Compare(a.Key, b.Key) })
	var dataSize uint64
	for i, p := range sorted {
		if i > 0 && bytes.Equal(sorted[i-1].Key, p.Key) {
			return nil, 0, fmt.Errorf("table: build table: duplicate key %s", quoteKey(p.Key))
		}
		if uint64(len(p.Key)) > maxField || uint64(len(p.Value)) > maxField {
			return nil, 0, fmt.Errorf("table: build table: key %s: key or value longer than %d bytes", quoteKey(p.Key), uint64(maxField))
		}
		// Pairs may share memory, so the sum may exceed what is in
		// memory: stop as soon as it passes MaxInt (this also rules out
		// uint64 overflow, as each field is below 4 GiB).
		dataSize += uint64(len(p.Key)) + uint64(len(p.Value))
		if dataSize > math.MaxInt-headerSize {
			return nil, 0, fmt.Errorf("table: build table: more than %d bytes of data do not fit in memory", uint64(math.MaxInt-headerSize))
		}
	}
	if uint64(len(sorted)) > (math.MaxInt-headerSize-dataSize)/entrySize {
		return nil, 0, fmt.Errorf("table: build table: %d pairs with %d bytes of data do not fit in memory", len(sorted), dataSize)
	}
	return sorted, dataSize, nil
}

func putHeader(b []byte, count int, dataSize uint64) {
	copy(b, Magic)
	le.PutUint32(b[8:], Version)
	le.PutUint32(b[12:], 0)
	le.PutUint64(b[16:], uint64(count))
	le.PutUint64(b[24:], dataSize)
}

// putEntry writes an entry whose key starts at off, directly followed by
// its value.
func putEntry(b []byte, off, keyLen, valueLen int) {
	le.PutUint64(b[0:], uint64(off))
	le.PutUint64(b[8:], uint64(off+keyLen))
	le.PutUint32(b[16:], uint32(keyLen))
	le.PutUint32(b[20:], uint32(valueLen))
}
