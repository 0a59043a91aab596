// Package sockets opens the listening sockets of -listen specs exactly once
// in the master (through tableflip's Fds, so that an upgraded master
// inherits them instead of binding again), takes the ones systemd socket
// activation passes, and hands them to workers the way systemd does: fds 3,
// 4, … with LISTEN_FDS and LISTEN_FDNAMES (Env, Files). The worker side
// (FromEnv, Inherited) takes them back by name.
//
// Master side:
//
//	socks, err := sockets.Open(upg.Fds, specs)   // upg is a *tableflip.Upgrader
//	cmd.ExtraFiles = sockets.Files(socks)       // fds 3.. in order
//	cmd.Env = append(cmd.Env, sockets.Env(socks)...)
//
// Worker side (any process started with that contract):
//
//	in, err := sockets.FromEnv()
//	ln, err := in.Listener("http")
//
// # Blocking mode
//
// O_NONBLOCK belongs to the open file description, which the master and every
// worker share. os/exec calls (*os.File).Fd on each ExtraFiles entry, and Fd
// switches a socket that net created to blocking mode, which would turn every
// running worker's accept into a blocking call. Socket.File therefore returns
// a duplicate wrapped by os.NewFile, whose Fd does not touch the mode, and
// the worker side never calls Fd on a socket created by net. The master
// never sets the mode itself: an external worker that wants blocking accepts
// may set it (all workers of a generation run the same program).
package sockets
