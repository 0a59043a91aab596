package balance

// Mode is what a worker balances on.
type Mode int

const (
	// Off: no board; workers accept in the kernel's order.
	Off Mode = iota
	// Conns: a worker holding more than its share of open connections
	// (from MinOpen on) leaves new ones to the others.
	Conns
	// Accepts: Conns, and a worker that has accepted more than Slack
	// connections beyond the average of the workers accepting now waits
	// too: fresh connections spread evenly, but on a saturated machine
	// the waits cost throughput (the connection waits for a worker that is
	// off-CPU instead of the one that is on it).
	Accepts
)

// ParseMode maps the -balance values ("conns" or "", "accepts", "off") to a
// Mode; anything else is Off (the master's Config validation rejects it
// first).
func ParseMode(s string) Mode {
	switch s {
	case "", "conns":
		return Conns
	case "accepts":
		return Accepts
	}
	return Off
}
