//go:build linux

package master

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"

	"github.com/preforkd/preforkd/internal/contract"
	"github.com/preforkd/preforkd/internal/sdnotify"
	"golang.org/x/sys/unix"
)

// notifySocket is the master's NOTIFY_SOCKET for its workers: an abstract
// unixgram socket (no file to clean up, and reachable by workers that run
// as another user), with SO_PASSCRED so that every datagram carries the
// sender's pid as checked by the kernel. A message is trusted for its
// sender's pid only; its content never names a worker.
type notifySocket struct {
	conn      *net.UnixConn
	addr      string // as put in NOTIFY_SOCKET ("@…")
	oversized atomic.Uint64
	malformed atomic.Uint64
}

func listenNotify() (*notifySocket, error) {
	var b [8]byte
	rand.Read(b[:])
	name := fmt.Sprintf("preforkd/%d/%s", os.Getpid(), hex.EncodeToString(b[:]))
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + name, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	rc, err := conn.SyscallConn()
	if err == nil {
		var serr error
		err = rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
			if serr == nil {
				// Room for bursts of heartbeats from many workers.
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
			}
		})
		if err == nil {
			err = serr
		}
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("notify socket: SO_PASSCRED: %w", err)
	}
	return &notifySocket{conn: conn, addr: "@" + name}, nil
}

// serve reads datagrams until the socket is closed, sending each valid
// one as a noteEvent. A datagram larger than sdnotify.MaxMessage is
// dropped (MSG_TRUNC); so is one without credentials. It never blocks on
// a sender: a full receive buffer makes senders' writes fail, not ours.
func (n *notifySocket) serve(out chan<- noteEvent, quit <-chan struct{}) {
	buf := make([]byte, sdnotify.MaxMessage+1)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)*4)
	for {
		nb, noob, flags, _, err := n.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if flags&unix.MSG_TRUNC != 0 || nb > sdnotify.MaxMessage {
			n.oversized.Add(1)
			continue
		}
		pid := senderPid(oob[:noob])
		f, perr := sdnotify.Parse(buf[:nb])
		if pid <= 0 || perr != nil {
			n.malformed.Add(1)
			continue
		}
		ev := noteEvent{pid: pid, ready: f.Ready, watchdog: f.Watchdog, stopping: f.Stopping, status: f.Status, recycle: f.Vars[contract.RecycleVar],
			spare: f.Vars[contract.SpareVar] == "waiting"}
		select {
		case out <- ev:
		case <-quit:
			return
		}
	}
}

func senderPid(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for i := range msgs {
		if cred, err := unix.ParseUnixCredentials(&msgs[i]); err == nil {
			return int(cred.Pid)
		}
	}
	return 0
}

func (n *notifySocket) close() error { return n.conn.Close() }
