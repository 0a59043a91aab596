// Package integration_test builds cmd/preforkd and drives it as a user
// would: real processes, real sockets on 127.0.0.1, real signals. Every
// process a test starts is ended by the test (by pid), also on failure.
// The test process is a child subreaper, so that masters orphaned by an
// upgrade are re-parented to it and can be reaped and checked for zombies.
package integration
