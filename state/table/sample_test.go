package table

import "fmt"

// sampleTable is a table of n entries "key-%06d" → "value-%06d".
func sampleTable(n int) []byte {
	pairs := make([]KV, n)
	for i := range pairs {
		pairs[i] = KV{Key: fmt.Appendf(nil, "key-%06d", i), Value: fmt.Appendf(nil, "value-%06d", i)}
	}
	b, err := Build(pairs)
	if err != nil {
		panic(err)
	}
	return b
}
