package state

import "testing"

func TestChecksum(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"", 0},
		{"123456789", 0xcbf43926}, // the CRC-32 check value
		{"The quick brown fox jumps over the lazy dog", 0x414fa339},
	} {
		if got := Checksum([]byte(tc.in)); got != tc.want {
			t.Errorf("Checksum(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

func BenchmarkChecksum(b *testing.B) {
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i * 31)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		Checksum(data)
	}
}
