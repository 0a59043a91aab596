// Package sdnotify speaks systemd's notification protocol (sd_notify(3)):
// newline-separated KEY=VALUE assignments sent as one datagram to the unix
// socket named by NOTIFY_SOCKET.
//
// Both sides live here because preforkd is both a client (a worker tells its
// master READY=1; the master tells systemd READY=1, RELOADING=1, MAINPID=…)
// and a server (the master receives its workers' messages). We write the
// client ourselves instead of using go-systemd's daemon.SdNotify because a
// worker sends a heartbeat every few hundred milliseconds and daemon.SdNotify
// dials the socket anew for every message; Conn dials once.
//
//	c, err := sdnotify.Dial(os.Getenv("NOTIFY_SOCKET"))
//	if err == nil && c != nil {
//		c.Send("READY=1")
//	}
//
// Parse turns a received datagram into fields; it never panics and never
// allocates more than the datagram's size.
package sdnotify
