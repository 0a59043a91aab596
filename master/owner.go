package master

// owner is the owner-loop pattern: one goroutine owns some mutable state and
// runs, between its other work, the functions that other goroutines hand
// it through do. The supervisor and the master's main loop are both built
// on it: the owning goroutine selects on ops and closes done when it
// returns for good.
type owner struct {
	ops  chan func()   // run in the owning goroutine
	done chan struct{} // closed when the owning goroutine has returned
}

func newOwner() owner {
	return owner{ops: make(chan func()), done: make(chan struct{})}
}

// do runs f in the owning goroutine and waits for it. It returns false,
// without running f, once the owner has returned.
func (o owner) do(f func()) bool {
	ran := make(chan struct{})
	select {
	case o.ops <- func() { f(); close(ran) }:
		<-ran
		return true
	case <-o.done:
		return false
	}
}
