package table

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
)

// tsvChunk is the size of the blocks ParseTSV copies lines into; a line
// longer than a quarter of it gets a block of its own.
const tsvChunk = 1 << 20

// ParseTSV reads key/value pairs from r, one per line, until io.EOF, and
// returns them in input order. It blocks in r.Read.
//
// A line is the key, a TAB, and the value: everything after the first TAB,
// further TABs included. Lines end with "\n" or "\r\n" (the "\r" is dropped)
// or at the end of the input; a line may be of any length. Keys are raw
// bytes: there is no quoting or escaping, so a key cannot hold a TAB or a
// newline and a value cannot hold a newline. Empty lines are skipped; every
// other line must have a TAB and a non-empty key, and no key may appear
// twice. The value may be empty.
//
// It returns (pairs, nil), with no pairs for an input of only empty lines;
// or (nil, err) where err names the first bad line in input order, as in
// `table: tsv line 7: missing TAB between key and value` or
// `table: tsv line 9: duplicate key "a" (first on line 2)`; or (nil, err)
// with the read error from r.
func ParseTSV(r io.Reader) ([]KV, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		pairs []KV
		lines []int // line number of each pair
		arena []byte
		long  []byte // a line that does not fit in br's buffer
	)
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, line...)
			line, err = br.ReadSlice('\n')
		}
		if long != nil {
			line = append(long, line...)
			long = nil
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("table: tsv line %d: %w", lineNo, err)
		}
		if err == io.EOF && len(line) == 0 {
			break
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 {
			tab := bytes.IndexByte(line, '\t')
			if tab <= 0 {
				// A duplicate on an earlier line is the first error.
				if err := duplicateError(pairs, lines); err != nil {
					return nil, err
				}
				if tab < 0 {
					return nil, fmt.Errorf("table: tsv line %d: missing TAB between key and value", lineNo)
				}
				return nil, fmt.Errorf("table: tsv line %d: empty key", lineNo)
			}
			// Copy the line out of br's buffer into the arena.
			if len(line) > tsvChunk/4 {
				line = bytes.Clone(line)
			} else {
				if len(line) > cap(arena)-len(arena) {
					arena = make([]byte, 0, tsvChunk)
				}
				start := len(arena)
				arena = append(arena, line...)
				line = arena[start:len(arena):len(arena)]
			}
			pairs = append(pairs, KV{Key: line[:tab:tab], Value: line[tab+1:]})
			lines = append(lines, lineNo)
		}
		if err == io.EOF {
			break
		}
	}
	if err := duplicateError(pairs, lines); err != nil {
		return nil, err
	}
	return pairs, nil
}

// duplicateError reports the first line, in input order, whose key
// appeared on an earlier line, or returns nil.
func duplicateError(pairs []KV, lines []int) error {
	order := make([]int, len(pairs))
	for i := range order {
		order[i] = i
	}
	// Sort by key, then by position: in a run of equal keys, the second
	// element is the first repetition of that key.
	slices.SortFunc(order, func(a, b int) int {
		if c := bytes.Compare(pairs[a].Key, pairs[b].Key); c != 0 {
			return c
		}
		return a - b
	})
	dup, first := -1, -1
	for j := 1; j < len(order); j++ {
		a, b := order[j-1], order[j]
		if !bytes.Equal(pairs[a].Key, pairs[b].Key) {
			continue
		}
		if j >= 2 && bytes.Equal(pairs[order[j-2]].Key, pairs[a].Key) {
			continue // a third or later repetition
		}
		if dup < 0 || b < dup {
			dup, first = b, a
		}
	}
	if dup < 0 {
		return nil
	}
	return fmt.Errorf("table: tsv line %d: duplicate key %s (first on line %d)",
		lines[dup], quoteKey(pairs[dup].Key), lines[first])
}
