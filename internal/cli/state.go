package cli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/preforkd/preforkd/state/table"
)

// runState is "NAME state build -in data.tsv -out table.bin": it turns
// key<TAB>value lines into the shared table format. The output is written
// to a temporary file and renamed, so a failed build leaves nothing behind.
func runState(name string, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "build" {
		return usageError{fmt.Errorf("state: want: %s state build -in data.tsv -out table.bin", name)}
	}
	fs := flag.NewFlagSet("state build", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	in := fs.String("in", "", "input: one key<TAB>value per line (- for stdin)")
	out := fs.String("out", "", "output table file")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "Usage: %s state build -in data.tsv -out table.bin\n\n"+
				"Turns key<TAB>value lines into the key/value table format, for -state.\n\n", name)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return err
		}
		return usageError{fmt.Errorf("state build: %v", err)}
	}
	if *in == "" || *out == "" {
		return usageError{errors.New("state build: -in and -out are required")}
	}
	var r io.Reader = os.Stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return fmt.Errorf("state build: -in %q: %w", *in, errors.Unwrap(err))
		}
		defer f.Close()
		r = f
	}
	pairs, err := table.ParseTSV(bufio.NewReaderSize(r, 1<<20))
	if err != nil {
		return fmt.Errorf("state build: %s: %w", *in, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".preforkd-table-*")
	if err != nil {
		return fmt.Errorf("state build: -out %q: %w", *out, err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err := table.Write(w, pairs); err != nil {
		tmp.Close()
		return fmt.Errorf("state build: %w", err)
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("state build: -out %q: %w", *out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state build: -out %q: %w", *out, err)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("state build: -out %q: %w", *out, err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d keys\n", *out, len(pairs))
	return nil
}
