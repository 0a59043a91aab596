// Package listener owns the listening sockets: parsing the NAME=SCHEME://ADDR
// specs given to -listen, opening each exactly once in the master (through
// tableflip's Fds, so that an upgraded master inherits them instead of binding
// again), and handing them to workers the way systemd socket activation does
// (fds 3, 4, … with LISTEN_FDS and LISTEN_FDNAMES).
//
// Master side:
//
//	specs := []listener.Spec{must(listener.Parse("http=tcp://127.0.0.1:8080"))}
//	socks, err := listener.Open(upg.Fds, specs)  // upg is a *tableflip.Upgrader
//	cmd.ExtraFiles = listener.Files(socks)       // fds 3.. in order
//	cmd.Env = append(cmd.Env, listener.Env(socks)...)
//
// Worker side (any process started with that contract):
//
//	in, err := listener.FromEnv()
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
package listener
