// Package table is a flat, sorted key/value format that is searched in
// place: a worker opens the shared state region (w.State() in package
// server) as a Table without parsing or copying it, and a lookup allocates
// nothing.
//
//	b, err := table.Build([]table.KV{{Key: []byte("k"), Value: []byte("v")}})
//	…
//	t, err := table.Open(w.State())
//	v, ok := t.GetString("k")
//
// ParseTSV reads the tab-separated input of `preforkd state build`, and
// Write streams a table without holding it twice.
//
// # Table format (version 1)
//
// A table is a byte string with no Go pointers in it, read in place. All
// integers are little-endian and unsigned.
//
//	offset  size  field
//	0       8     magic "PFKVTBL1" (0x50 0x46 0x4B 0x56 0x54 0x42 0x4C 0x31)
//	8       4     version, 1
//	12      4     flags, 0 (reserved; a table with any flag set is refused)
//	16      8     count: the number of entries, n
//	24      8     data size: the number of bytes in the data area, d
//	32      24×n  the entries, sorted by key (see below)
//	32+24n  d     the data area
//
// The table is exactly 32 + 24n + d bytes long: a longer or shorter byte
// string is refused. Entry i starts at byte 32 + 24i:
//
//	offset  size  field
//	0       8     key offset, counted from the start of the data area
//	8       8     value offset, counted from the start of the data area
//	16      4     key length
//	20      4     value length
//
// Every key and value lies inside the data area (offset + length ≤ d). Keys
// are arbitrary bytes (the empty key included) and are strictly increasing
// in bytes.Compare order, so there are no duplicates and a lookup is a binary
// search. Keys and values are limited to 4 GiB − 1 bytes each. A reader
// accepts any placement of keys and values in the data area (they may even
// overlap); Build and Write store key 0, value 0, key 1, value 1, …
// back to back, without padding.
//
// Open checks all of this once, with overflow-safe arithmetic, so that
// no later lookup can read out of bounds or panic on a corrupt table.
package table
