package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"

	"golang.org/x/sys/unix"
)

// procs keeps track of every process the bench starts. The bench is a
// child subreaper, so masters orphaned by an upgrade (and workers of a
// killed master) are re-parented to it: every process it started, however
// indirectly, stays its descendant and is ended by pid at the end of each
// scenario (killAll), on failure too.
type procs struct {
	mu   sync.Mutex
	cmds map[int]bool // started through exec.Cmd (reaped by Wait)
}

func newProcs() (*procs, error) {
	if err := testutil.BecomeSubreaper(); err != nil {
		return nil, err
	}
	return &procs{cmds: map[int]bool{}}, nil
}

// start starts cmd and records it.
func (p *procs) start(cmd *exec.Cmd) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	p.cmds[cmd.Process.Pid] = true
	return nil
}

// run starts cmd and waits for it.
func (p *procs) run(cmd *exec.Cmd) error {
	if err := p.start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// reap reaps the adopted orphans that have exited (never an exec.Cmd child:
// its Wait does that).
func (p *procs) reap() {
	testutil.ReapOrphans(func(pid int) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.cmds[pid]
	})
}

// killAll SIGKILLs every live descendant of the bench, by pid, and waits
// (at most 10 s) until none is left. Call it only between scenarios.
func (p *procs) killAll() {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		left := 0
		for _, pid := range testutil.Live(testutil.Descendants(os.Getpid())) {
			unix.Kill(pid, unix.SIGKILL)
			left++
		}
		p.reap()
		if left == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// copyExe copies an executable to to (atomically, by rename).
func copyExe(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.WriteFile(to+".tmp", b, 0o755); err != nil {
		return err
	}
	return os.Rename(to+".tmp", to)
}

// startPlain starts a server that is not a preforkd master (its output
// goes to a file in tmp) and waits until GET / answers on port.
func startPlain(p *procs, tmp, bin string, port int, args ...string) error {
	out, err := os.CreateTemp(tmp, filepath.Base(bin)+"-*.log")
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := p.start(cmd); err != nil {
		return err
	}
	go cmd.Wait()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			c.CloseIdleConnections()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := os.ReadFile(out.Name())
	return fmt.Errorf("%s did not answer on port %d within 30s:\n%s", bin, port, b)
}

// connSplit counts the established TCP connections to 127.0.0.1:port by
// the process that holds them (any descendant of the bench), largest
// first: how a shared accept queue spread a client's connections.
func connSplit(port int) []int {
	owners := socketOwners()
	byPID := map[int]int{}
	for _, ino := range tcpSockets(port, tcpEstablished) {
		if pids := owners[ino]; len(pids) > 0 {
			byPID[pids[0]]++
		}
	}
	var out []int
	for _, n := range byPID {
		out = append(out, n)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(out)))
	return out
}

// TCP states in /proc/net/tcp.
const (
	tcpEstablished = "01"
	tcpListen      = "0A"
)

// tcpSockets are the inodes of the IPv4 TCP sockets whose local port is
// port, in state (tcpEstablished, tcpListen).
func tcpSockets(port int, state string) []string {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil
	}
	want := fmt.Sprintf(":%04X", port)
	var out []string
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		// local address, remote, state, …, inode (field 9).
		if len(f) > 9 && strings.HasSuffix(f[1], want) && f[3] == state {
			out = append(out, f[9])
		}
	}
	return out
}

// socketOwners maps a socket inode to the bench's descendants that hold a
// descriptor of it.
func socketOwners() map[string][]int {
	owners := map[string][]int{}
	for _, pid := range testutil.Descendants(os.Getpid()) {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, _ := os.ReadDir(dir)
		seen := map[string]bool{}
		for _, e := range ents {
			l, err := os.Readlink(dir + "/" + e.Name())
			if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
				if ino = strings.TrimSuffix(ino, "]"); !seen[ino] {
					seen[ino] = true
					owners[ino] = append(owners[ino], pid)
				}
			}
		}
	}
	return owners
}
