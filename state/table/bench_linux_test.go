//go:build linux

package table

import (
	"testing"

	"github.com/preforkd/preforkd/state"
)

// BenchmarkGetMapped: Get over the table in a sealed memfd mapping, as in a
// worker.
func BenchmarkGetMapped(b *testing.B) {
	r, err := state.FromBytes("bench", sampleTable(benchKeys))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	m, err := r.Map()
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	tb, err := Open(m.Bytes())
	if err != nil {
		b.Fatal(err)
	}
	benchGet(b, tb)
}
