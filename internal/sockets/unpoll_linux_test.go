//go:build linux

package sockets

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
	"golang.org/x/sys/unix"
)

// registered counts this process's epoll registrations of the socket with
// inode ino.
func registered(t *testing.T, ino uint64) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		epfd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); l != "anon_inode:[eventpoll]" {
			continue
		}
		tfds, err := epollTargets(epfd)
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range tfds {
			var st unix.Stat_t
			if unix.Fstat(fd, &st) == nil && st.Ino == ino {
				n++
			}
		}
	}
	return n
}

// Unpoll takes every copy of the workers' sockets out of the runtime's
// poller (a socket the master does not serve must not wake it), leaves
// other sockets there, and the sockets still work: a connection queued on
// one is accepted through a copy, and closing them afterwards is clean.
func TestUnpoll(t *testing.T) {
	fds := testutil.NewFds()
	socks := mustOpen(t, fds, mustParse(t, "web=tcp://127.0.0.1:0"), mustParse(t, "dns=udp://127.0.0.1:0"))
	defer Close(socks)
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	inode := func(fd uintptr) uint64 {
		var st unix.Stat_t
		if err := unix.Fstat(int(fd), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	web := inode(socks[0].File().Fd())
	otherFile, _ := other.(*net.TCPListener).File()
	defer otherFile.Close()
	otherIno := inode(otherFile.Fd())
	if n := registered(t, web); n < 2 {
		t.Fatalf("before: %d registrations of the listener, want its listener and its File at least", n)
	}
	removed, err := Unpoll(socks)
	if err != nil {
		t.Fatal(err)
	}
	if n := registered(t, web); n != 0 {
		t.Errorf("after Unpoll: %d registrations of the listener left", n)
	}
	if removed < 2 {
		t.Errorf("removed %d registrations", removed)
	}
	if n := registered(t, otherIno); n == 0 {
		t.Error("Unpoll took another socket out of the poller")
	}
	c, err := net.DialTimeout("tcp", socks[0].Listener().Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ln, err := net.FileListener(socks[0].File()) // a worker's copy: registered anew
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	got, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept through a copy after Unpoll: %v", err)
	}
	got.Close()
}
