//go:build linux

package cli

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// checkServer refuses a control socket served by anyone but root or this
// user (SO_PEERCRED): another local user could have bound the path first
// and would otherwise be believed ("stop: ok", a fake status).
func checkServer(c net.Conn, _ string) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("cannot tell who serves it: %w", cerr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("served by uid %d (pid %d), neither root nor you: refusing to talk to it (remove it, or give -control the path of your master)", cred.Uid, cred.Pid)
	}
	return nil
}
