package state

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
)

// KV is one key/value pair given to BuildTable or WriteTable, or returned by
// ParseTSV.
type KV struct {
	Key, Value []byte
}

// BuildTable returns the table (see the package documentation) holding
// pairs, sorted by key. pairs itself is neither reordered nor retained.
//
// It returns (table, nil), or (nil, err) when two pairs have the same key
// (the error quotes the key), when a key or value is 4 GiB or longer, or
// when the table would not fit in memory. No pairs give a valid empty table.
func BuildTable(pairs []KV) ([]byte, error) {
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

// WriteTable writes to w the same bytes that BuildTable returns, without
// holding a second copy of the keys and values in memory. It blocks in
// w.Write.
//
// It returns nil once every byte was written; otherwise the error from
// BuildTable's checks (nothing is written then) or the first write error
// (w may then hold a partial table).
func WriteTable(w io.Writer, pairs []KV) error {
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
		return fmt.Errorf("state: write table: %w", err)
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
			return nil, 0, fmt.Errorf("state: build table: duplicate key %s", quoteKey(p.Key))
		}
		if uint64(len(p.Key)) > maxField || uint64(len(p.Value)) > maxField {
			return nil, 0, fmt.Errorf("state: build table: key %s: key or value longer than %d bytes", quoteKey(p.Key), uint64(maxField))
		}
		// Pairs may share memory, so the sum may exceed what is in
		// memory: stop as soon as it passes MaxInt (this also rules out
		// uint64 overflow, as each field is below 4 GiB).
		dataSize += uint64(len(p.Key)) + uint64(len(p.Value))
		if dataSize > math.MaxInt-headerSize {
			return nil, 0, fmt.Errorf("state: build table: more than %d bytes of data do not fit in memory", uint64(math.MaxInt-headerSize))
		}
	}
	if uint64(len(sorted)) > (math.MaxInt-headerSize-dataSize)/entrySize {
		return nil, 0, fmt.Errorf("state: build table: %d pairs with %d bytes of data do not fit in memory", len(sorted), dataSize)
	}
	return sorted, dataSize, nil
}

func putHeader(b []byte, count int, dataSize uint64) {
	copy(b, TableMagic)
	le.PutUint32(b[8:], TableVersion)
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

// DemoTable returns a deterministic table of n entries (none when n ≤ 0),
// built in one pass without sorting. Entry i, 0 ≤ i < n, is
//
//	key   "key-" + i in decimal, zero-padded to D digits
//	value "value-" + the same D digits + "-" + 16 lowercase hex digits of mix(i)
//
// where D is 6, or the number of digits of n−1 when n > 1,000,000, and mix
// is the SplitMix64 finaliser:
//
//	z := uint64(i) + 0x9E3779B97F4A7C15
//	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
//	z = (z ^ z>>27) * 0x94D049BB133111EB
//	mix(i) = z ^ z>>31
//
// For example entry 42 of DemoTable(1000) is "key-000042" →
// "value-000042-" + hex(mix(42)). DemoPair returns one entry. Zero-padding
// keeps the numeric order equal to the byte order. It panics only if the
// table does not fit in memory.
func DemoTable(n int) []byte {
	n = max(n, 0)
	d := demoDigits(n)
	kl, vl := 4+d, 6+d+1+16
	entsEnd := headerSize + n*entrySize
	b := make([]byte, entsEnd+n*(kl+vl))
	putHeader(b, n, uint64(n*(kl+vl)))
	data := b[entsEnd:]
	for i := range n {
		off := i * (kl + vl)
		putEntry(b[headerSize+i*entrySize:], off, kl, vl)
		writeDemoPair(data[off:off+kl+vl], i, d)
	}
	return b
}

// DemoPair returns a copy of entry i of DemoTable(n). It panics unless
// 0 ≤ i < n.
func DemoPair(n, i int) KV {
	if i < 0 || i >= n {
		panic(fmt.Sprintf("state: DemoPair(%d, %d): index out of range", n, i))
	}
	d := demoDigits(n)
	b := make([]byte, 4+d+6+d+1+16)
	writeDemoPair(b, i, d)
	return KV{Key: b[: 4+d : 4+d], Value: b[4+d:]}
}

// demoDigits returns the key width of DemoTable(n).
func demoDigits(n int) int {
	if n <= 1_000_000 {
		return 6
	}
	return len(strconv.Itoa(n - 1))
}

// writeDemoPair writes key i and its value back to back into b, which is
// exactly long enough.
func writeDemoPair(b []byte, i, d int) {
	const hex = "0123456789abcdef"
	p := copy(b, "key-")
	putDigits(b[p:p+d], i)
	p += d
	p += copy(b[p:], "value-")
	putDigits(b[p:p+d], i)
	p += d
	b[p] = '-'
	p++
	h := mix(uint64(i))
	for j := 15; j >= 0; j-- {
		b[p+j] = hex[h&0xf]
		h >>= 4
	}
}

// putDigits writes i in decimal into b, zero-padded to len(b).
func putDigits(b []byte, i int) {
	for j := len(b) - 1; j >= 0; j-- {
		b[j] = byte('0' + i%10)
		i /= 10
	}
}

// mix is the SplitMix64 finaliser.
func mix(x uint64) uint64 {
	z := x + 0x9E3779B97F4A7C15
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}
