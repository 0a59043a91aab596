package worker

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain also runs the child side of the worker tests: worker_test.go
// re-executes this binary with WORKER_HELPER=1 and -test.run=TestHelperWorker,
// and goleak then checks that Close stopped every goroutine of the runtime.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
