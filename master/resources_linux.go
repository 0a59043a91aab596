//go:build linux

package master

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cloudflare/tableflip"
	"github.com/preforkd/preforkd/internal/balance"
	"github.com/preforkd/preforkd/internal/contract"
	"github.com/preforkd/preforkd/internal/sdnotify"
	"github.com/preforkd/preforkd/internal/sockets"
	"github.com/preforkd/preforkd/listener"
	"golang.org/x/sys/unix"
)

// resources are the descriptors a master holds for its generation, opened
// and closed as one: the workers' listeners, the metrics and control
// listeners, the shared-state region, the workers' notify socket, the
// lifeline pipe, the service manager's notify socket, and the succession
// link. Listeners come through tableflip, so that an upgraded master
// inherits them.
type resources struct {
	link    *link
	socks   []*sockets.Socket
	metrics *sockets.Socket // nil: no metrics endpoint
	control *sockets.Socket // nil: no control socket
	region  Region          // nil: no shared state
	board   *balance.Board  // nil: no accept balance
	notify  *notifySocket
	lifeR   *os.File // the workers' end: EOF means the master is gone
	lifeW   *os.File
	sd      *sdnotify.Conn // nil: no service manager (a valid no-op)
}

// openResources opens everything but the state region (see
// master.loadState); on error it closes what it opened.
func openResources(fds *tableflip.Fds, cfg *Config, hasParent bool, log *slog.Logger) (_ *resources, err error) {
	r := &resources{}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.link, err = newLink(fds, log); err != nil {
		return nil, err
	}
	if err = r.openListeners(fds, cfg, hasParent, log); err != nil {
		return nil, err
	}
	if mode := balance.ParseMode(cfg.Balance); mode != balance.Off && len(cfg.Command) == 0 {
		if r.board, err = balance.Create(mode); err != nil {
			return nil, err
		}
	}
	if r.notify, err = listenNotify(); err != nil {
		return nil, err
	}
	// The read end goes to every worker through ExtraFiles. A pipe made by
	// os.Pipe would switch to blocking mode at each start (Fd() makes a
	// file blocking: the same trap as the listeners'), hanging workers'
	// reads of it; one wrapped by os.NewFile keeps its mode.
	var pfd [2]int
	if err = unix.Pipe2(pfd[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("lifeline pipe: %w", err)
	}
	r.lifeR, r.lifeW = os.NewFile(uintptr(pfd[0]), "lifeline"), os.NewFile(uintptr(pfd[1]), "lifeline-w")
	if r.sd, err = sdnotify.Dial(os.Getenv("NOTIFY_SOCKET")); err != nil {
		log.Warn("cannot reach the service manager's NOTIFY_SOCKET", "err", err)
		err = nil
	}
	return r, nil
}

func (r *resources) openListeners(fds *tableflip.Fds, cfg *Config, hasParent bool, log *slog.Logger) error {
	var act *sockets.Inherited
	if !hasParent && os.Getenv(contract.ListenFds) != "" {
		// Socket activation: systemd (or systemd-socket-activate) bound
		// the sockets. Upgrades then inherit them through tableflip.
		var err error
		if act, err = sockets.FromEnv(); err != nil {
			return fmt.Errorf("socket activation: %w", err)
		}
		log.Info("using sockets from socket activation", "names", act.Names())
	}
	var err error
	if r.socks, err = sockets.OpenActivated(fds, cfg.Listen, act); err != nil {
		if act != nil {
			act.Close()
		}
		return err
	}
	if cfg.MetricsAddr != "" {
		socks, err := sockets.Open(fds, []listener.Spec{{Name: "metrics", Network: "tcp", Address: cfg.MetricsAddr}})
		if err != nil {
			return fmt.Errorf("-metrics %s: %w", cfg.MetricsAddr, errors.Unwrap(err))
		}
		r.metrics = socks[0]
	}
	if cfg.Control != "off" {
		// The socket is created with mode 0600 by the umask at bind: a
		// chmod after bind would follow a symlink that another user swapped
		// in meanwhile (in a directory they can write). The umask is the
		// process's; the master starts no file-creating goroutine yet.
		old := unix.Umask(0o177)
		socks, err := sockets.Open(fds, []listener.Spec{{Name: "control", Network: "unix", Address: cfg.Control}})
		unix.Umask(old)
		if err != nil {
			return fmt.Errorf("-control %s: %w", cfg.Control, errors.Unwrap(err))
		}
		r.control = socks[0]
	}
	return nil
}

// close releases every descriptor. Unix socket files are not removed here
// (see master.close: only a final stop removes them).
func (r *resources) close() {
	if r.link != nil {
		r.link.close()
	}
	if r.notify != nil {
		r.notify.close()
	}
	sockets.Close(r.socks)
	for _, s := range []*sockets.Socket{r.metrics, r.control} {
		if s != nil {
			s.Close()
		}
	}
	for _, f := range []*os.File{r.lifeR, r.lifeW} {
		if f != nil {
			f.Close()
		}
	}
	if r.region != nil {
		r.region.Close()
	}
	if r.board != nil {
		r.board.Close()
	}
	r.sd.Close()
}
