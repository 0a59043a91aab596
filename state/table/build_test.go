package table

import "testing"

func BenchmarkBuildTable(b *testing.B) {
	pairs := tableKVs(b, sampleTable(100_000))
	for b.Loop() {
		if _, err := Build(pairs); err != nil {
			b.Fatal(err)
		}
	}
}
