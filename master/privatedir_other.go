//go:build !unix

package master

import (
	"errors"
	"io/fs"
	"os"
)

// privateDir makes sure dir exists (ownership is not checked here).
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}
