//go:build linux

package master

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// The sealed state region passes from a master to its successor through
// tableflip, like the listeners: each master adds its region under a name
// of its own (stateFileName) and offers the name, the region's size and
// Config.StateKey's answer. A successor with the same key takes the file
// (tableflip then passes it on again); one with another key builds its own
// region, and tableflip closes the inherited one when the successor is
// ready. Either way at most the two generations' regions are open at once.

// stateFileName is the tableflip file name of the region a master built;
// the pid keeps it distinct from any inherited name.
func stateFileName() string { return "preforkd-state-" + strconv.Itoa(os.Getpid()) }

// offerState registers a region this master built, for its successors.
func (m *master) offerState(r Region) {
	name := stateFileName()
	if err := m.upg.Fds.AddFile(name, r.File()); err != nil {
		m.log.Warn("cannot hand the state region to successors; each will build its own", "err", err)
		return
	}
	m.stateFile = name
}

// takeOverState returns the predecessor's region when its key is ours, or
// nil (build one).
func (m *master) takeOverState() Region {
	p := m.prev
	if !m.upg.HasParent() || m.stateKey == "" || p.StateKey == "" || p.StateFile == "" {
		return nil
	}
	if p.StateKey != m.stateKey {
		m.log.Info("the shared state changed; building it again")
		return nil
	}
	f, err := m.upg.Fds.File(p.StateFile)
	if err != nil || f == nil {
		m.log.Warn("the previous master's state region is not there; building it", "name", p.StateFile, "err", err)
		return nil
	}
	r, err := adoptRegion(f, p.StateSize)
	if err != nil {
		f.Close()
		m.log.Warn("cannot take over the previous master's state region; building it", "err", err)
		return nil
	}
	m.stateFile = p.StateFile // tableflip passes it on under the same name
	m.log.Info("took over the previous master's state region", "size", r.Size())
	return r
}

// heldRegion is a sealed region taken over from a predecessor.
type heldRegion struct {
	f    *os.File
	size int64
}

func (r *heldRegion) File() *os.File { return r.f }
func (r *heldRegion) Size() int64    { return r.size }
func (r *heldRegion) Close() error   { return r.f.Close() }

// wantSeals are the seals a region must carry: no write, no resize, and no
// way to undo that.
const wantSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// adoptRegion checks an inherited region as workers would (sealed, the
// size their mapping accepts) before handing it to them.
func adoptRegion(f *os.File, size int64) (*heldRegion, error) {
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("state region: seals: %w", err)
	}
	if seals&wantSeals != wantSeals {
		return nil, fmt.Errorf("state region: not sealed (seals %#x, want %#x)", seals, wantSeals)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("state region: %w", err)
	}
	// The size the workers' mapping (state.MapFd) accepts: exactly size,
	// or a hugetlbfs file rounded up to its huge page.
	want := size
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err == nil && fs.Type == unix.HUGETLBFS_MAGIC && fs.Bsize > 0 {
		want = (size + fs.Bsize - 1) / fs.Bsize * fs.Bsize
	}
	if size < 0 || st.Size != want {
		return nil, fmt.Errorf("state region: %d bytes, offered as %d (want a file of %d)", st.Size, size, want)
	}
	return &heldRegion{f: f, size: size}, nil
}
