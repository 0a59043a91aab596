package demo

import (
	"fmt"
	"strconv"

	"github.com/preforkd/preforkd/state/table"
)

// Keys is the size of the table cmd/preforkd generates when no -state is
// given.
const Keys = 100_000

// Table returns a deterministic table of n entries (none when n ≤ 0),
// the demo's shared state (key-000000 … ). Entry i, 0 ≤ i < n, is
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
// For example entry 42 of Table(1000) is "key-000042" →
// "value-000042-" + hex(mix(42)). Pair returns one entry. Zero-padding
// keeps the numeric order equal to the byte order. It panics only if the
// table does not fit in memory.
func Table(n int) []byte {
	n = max(n, 0)
	d := digits(n)
	kl, vl := 4+d, 6+d+1+16
	data := make([]byte, n*(kl+vl))
	pairs := make([]table.KV, n)
	for i := range n {
		p := data[i*(kl+vl) : (i+1)*(kl+vl)]
		writePair(p, i, d)
		pairs[i] = table.KV{Key: p[:kl:kl], Value: p[kl:]}
	}
	b, err := table.Build(pairs) // sorted already: Build's sort is cheap
	if err != nil {
		panic(err) // only if it does not fit in memory
	}
	return b
}

// TableKey is the fingerprint of Table(n) (server.WithStateKey): the
// table's layout version (table.Version), this generator's version and n.
// Change tableGen when Table's output changes.
func TableKey(n int) string {
	return fmt.Sprintf("demo-table format=%d gen=%d keys=%d", table.Version, tableGen, max(n, 0))
}

// tableGen is the version of Table's generator.
const tableGen = 1

// Pair returns a copy of entry i of Table(n). It panics unless 0 ≤ i < n.
func Pair(n, i int) table.KV {
	if i < 0 || i >= n {
		panic(fmt.Sprintf("demo: Pair(%d, %d): index out of range", n, i))
	}
	d := digits(n)
	b := make([]byte, 4+d+6+d+1+16)
	writePair(b, i, d)
	return table.KV{Key: b[: 4+d : 4+d], Value: b[4+d:]}
}

// digits returns the key width of Table(n).
func digits(n int) int {
	if n <= 1_000_000 {
		return 6
	}
	return len(strconv.Itoa(n - 1))
}

// writePair writes key i and its value back to back into b, which is
// exactly long enough.
func writePair(b []byte, i, d int) {
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
