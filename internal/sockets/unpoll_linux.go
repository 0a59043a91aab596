//go:build linux

package sockets

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Unpoll takes every descriptor this process holds of socks (its own
// listener and File, tableflip's copies, whatever else refers to the same
// sockets) out of the Go runtime's epoll set. The master never accepts or
// reads on the workers' sockets; registered, each new connection woke its
// poller once per copy (three here), measured at 12–13 µs of the master's
// CPU per fresh connection, about 13% of what a worker spends on a fresh
// request. The runtime's own close later tries the same removal and ignores
// that it is gone. It returns how many registrations it removed.
//
// This reaches past the runtime (its epoll descriptor is found in
// /proc/self/fd, its registrations in /proc/self/fdinfo): Go has no API to
// keep an *os.File or net.Listener of a non-blocking descriptor out of
// its poller, and the blocking-mode flag that decides it is shared with
// the workers, so a blocking copy is not an option.
func Unpoll(socks []*Socket) (int, error) {
	want := map[uint64]bool{}
	for _, s := range socks {
		var st unix.Stat_t
		if err := unix.Fstat(int(s.file.Fd()), &st); err != nil {
			return 0, fmt.Errorf("unpoll %s: %w", s.Spec, err)
		}
		want[st.Ino] = true
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("unpoll: %w", err)
	}
	removed := 0
	for _, e := range ents {
		epfd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err != nil || l != "anon_inode:[eventpoll]" {
			continue
		}
		tfds, err := epollTargets(epfd)
		if err != nil {
			return removed, fmt.Errorf("unpoll: %w", err)
		}
		for _, fd := range tfds {
			var st unix.Stat_t
			if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK || !want[st.Ino] {
				continue
			}
			if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_DEL, fd, nil); err == nil {
				removed++
			}
		}
	}
	return removed, nil
}

// epollTargets are the descriptors registered with epoll instance epfd
// (the "tfd:" lines of its fdinfo).
func epollTargets(epfd int) ([]int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", epfd))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "tfd:" {
			if n, err := strconv.Atoi(fs[1]); err == nil {
				out = append(out, n)
			}
		}
	}
	return out, sc.Err()
}
