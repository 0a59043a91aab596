package state

// sampleData is about the size of a key/value table of n entries (48 bytes
// an entry), deterministic, for tests of the region that need realistic
// sizes and content.
func sampleData(n int) []byte {
	b := make([]byte, 32+48*max(n, 0))
	x := uint64(0x9E3779B97F4A7C15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}
