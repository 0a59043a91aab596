package table

import (
	"math/rand/v2"
	"testing"
)

const benchKeys = 1_000_000

// benchLookups returns keys of table tb in a fixed random order, with every
// eighth key replaced by a missing one.
func benchLookups(tb *Table) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([][]byte, 1<<16)
	for i := range keys {
		k := tb.Key(rng.IntN(tb.Len()))
		if i%8 == 0 {
			k = append(k[:len(k):len(k)], '!') // a copy; sorts after k
		}
		keys[i] = k
	}
	return keys
}

func BenchmarkGet(b *testing.B) {
	tb, err := Open(sampleTable(benchKeys))
	if err != nil {
		b.Fatal(err)
	}
	benchGet(b, tb)
}

// BenchmarkGetSmall: a table that fits in the CPU caches, for comparison.
func BenchmarkGetSmall(b *testing.B) {
	tb, err := Open(sampleTable(1000))
	if err != nil {
		b.Fatal(err)
	}
	benchGet(b, tb)
}

func benchGet(b *testing.B, tb *Table) {
	keys := benchLookups(tb)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tb.Get(keys[i&(len(keys)-1)])
		i++
	}
}

func BenchmarkGetString(b *testing.B) {
	tb, err := Open(sampleTable(benchKeys))
	if err != nil {
		b.Fatal(err)
	}
	var keys []string
	for _, k := range benchLookups(tb) {
		keys = append(keys, string(k))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tb.GetString(keys[i&(len(keys)-1)])
		i++
	}
}

func BenchmarkOpenTable(b *testing.B) {
	data := sampleTable(benchKeys)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(data); err != nil {
			b.Fatal(err)
		}
	}
}
