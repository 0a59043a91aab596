// Package testutil is the one copy of what the project's tests and its
// benchmark harness share: polling for a condition, free loopback ports, a
// goroutine-safe output buffer, and the process table (/proc) to find,
// count and reap what a test started. It is internal: the examples and
// bench modules import it by path, users never see it.
package testutil
