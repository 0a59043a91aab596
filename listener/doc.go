// Package listener is the -listen spec: NAME=SCHEME://ADDR, where SCHEME
// is tcp, tcp4, tcp6, unix (unix:///path, or unix://@name for an abstract
// socket) or udp. A master opens every spec's socket once and hands it to
// its workers the way systemd socket activation does (fds 3, 4, … in order,
// named by LISTEN_FDNAMES); a Go worker gets them by name from package
// worker (w.Listener("http")), a worker in any other language from
// LISTEN_FDS.
//
//	spec, err := listener.Parse("http=tcp://127.0.0.1:8080")
//	if err != nil { … } // wraps ErrSpec and names the bad part
//	cfg := master.Config{Listen: []listener.Spec{spec}}
package listener
