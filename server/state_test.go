package server

import (
	"testing"

	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/state"
)

func stateFromBytes(t *testing.T, b []byte) (master.Region, error) {
	t.Helper()
	return state.FromBytes("test", b)
}
