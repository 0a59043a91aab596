//go:build linux

package sockets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
	"github.com/preforkd/preforkd/listener"

	"golang.org/x/sys/unix"
)

func TestEnv(t *testing.T) {
	tests := []struct {
		names []string
		want  []string
	}{
		{nil, []string{"LISTEN_FDS=0", "LISTEN_FDNAMES="}},
		{[]string{"web"}, []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=web"}},
		{[]string{"web", "dns", "admin"}, []string{"LISTEN_FDS=3", "LISTEN_FDNAMES=web:dns:admin"}},
	}
	for _, tt := range tests {
		var socks []*Socket
		for _, n := range tt.names {
			socks = append(socks, &Socket{Spec: listener.Spec{Name: n, Network: "tcp", Address: "127.0.0.1:0"}})
		}
		got := Env(socks)
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("Env(%q) = %q, want %q", tt.names, got, tt.want)
		}
		for _, kv := range got {
			if strings.HasPrefix(kv, envPid+"=") {
				t.Errorf("Env sets %s, which os/exec cannot know", kv)
			}
		}
	}
}

func TestFromEnvWithoutListenFds(t *testing.T) {
	t.Setenv(envFds, "")
	t.Setenv(envFdNames, "web")
	t.Setenv(envPid, "")
	in, err := FromEnv()
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	defer in.Close()
	if n := in.Names(); len(n) != 0 {
		t.Errorf("Names() = %q, want none", n)
	}
	assertUnset(t)
}

func TestFromEnvOtherPid(t *testing.T) {
	t.Setenv(envFds, "2")
	t.Setenv(envFdNames, "web:dns")
	t.Setenv(envPid, strconv.Itoa(os.Getppid()))
	in, err := FromEnv()
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	defer in.Close()
	if n := in.Names(); len(n) != 0 {
		t.Errorf("Names() = %q, want none: the sockets belong to pid %d", n, os.Getppid())
	}
	if _, err := in.Listener("web"); !errors.Is(err, ErrNoSocket) {
		t.Errorf("Listener(web) = %v, want ErrNoSocket", err)
	}
	assertUnset(t)
}

func TestFromEnvBadCount(t *testing.T) {
	for _, n := range []string{"abc", "-1", "1025", "1.5"} {
		t.Run(n, func(t *testing.T) {
			t.Setenv(envFds, n)
			t.Setenv(envFdNames, "web")
			t.Setenv(envPid, strconv.Itoa(os.Getpid()))
			in, err := FromEnv()
			if err == nil {
				in.Close()
				t.Fatalf("FromEnv with %s=%q succeeded", envFds, n)
			}
			if in != nil {
				t.Errorf("FromEnv returned a set with its error")
			}
			if !strings.Contains(err.Error(), envFds) || !strings.Contains(err.Error(), strconv.Quote(n)) {
				t.Errorf("error %q does not name %s=%q", err, envFds, n)
			}
			assertUnset(t)
		})
	}
}

func assertUnset(t *testing.T) {
	t.Helper()
	for _, k := range []string{envFds, envFdNames, envPid} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q still set after FromEnv", k, v)
		}
	}
}

// TestFromEnvInChild hands a tcp listener and a udp socket to a real child
// process (this test binary running TestHelperProcess), exactly as a master
// hands them to a worker, and gets a greeting through the shared socket.
func TestFromEnvInChild(t *testing.T) {
	for _, setPid := range []bool{false, true} {
		name := "framework worker"
		if setPid {
			name = "LISTEN_PID set by a shim"
		}
		t.Run(name, func(t *testing.T) { testFromEnvInChild(t, setPid) })
	}
}

func testFromEnvInChild(t *testing.T, setPid bool) {
	socks := mustOpen(t, testutil.NewFds(),
		mustParse(t, "web=tcp://127.0.0.1:0"),
		mustParse(t, "dns=udp://127.0.0.1:0"))
	webAddr := socks[0].Listener().Addr().String()
	dnsAddr := socks[1].pc.LocalAddr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(),
		"LISTENER_HELPER=1",
		"LISTENER_HELPER_WEB="+webAddr,
		"LISTENER_HELPER_DNS="+dnsAddr,
		"LISTENER_HELPER_SETPID="+strconv.FormatBool(setPid))
	cmd.Env = append(cmd.Env, Env(socks)...)
	cmd.ExtraFiles = Files(socks)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waited := false
	wait := func() error {
		waited = true
		return <-done
	}
	defer func() {
		if !waited {
			cancel() // kills the child
			wait()
		}
	}()

	c, err := net.DialTimeout("tcp", webAddr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", webAddr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	greeting, rerr := io.ReadAll(c)
	if rerr != nil {
		cancel()
	}
	werr := wait()
	if rerr != nil || werr != nil {
		t.Fatalf("read greeting: %q, %v; helper: %v\n%s", greeting, rerr, werr, out.String())
	}
	if want := fmt.Sprintf("hello from %d", cmd.Process.Pid); string(greeting) != want {
		t.Errorf("greeting %q, want %q\n%s", greeting, want, out.String())
	}
	if !strings.Contains(out.String(), "--- PASS: TestHelperProcess") {
		t.Errorf("helper did not run TestHelperProcess:\n%s", out.String())
	}
	// Neither the start nor the child's FromEnv made the shared socket blocking.
	for _, s := range socks {
		if fl := getfl(t, rawConnOf(t, s)); fl&unix.O_NONBLOCK == 0 {
			t.Errorf("%s: master's socket is blocking after the hand-off (flags %#x)", s.Spec, fl)
		}
	}
}

// TestHelperProcess is the worker side of TestFromEnvInChild; it does
// nothing unless LISTENER_HELPER=1.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("LISTENER_HELPER") != "1" {
		return // only the helper process of TestFromEnvInChild runs this
	}
	if os.Getenv("LISTENER_HELPER_SETPID") == "true" {
		os.Setenv(envPid, strconv.Itoa(os.Getpid())) // what the exec shim does
	}
	if got := os.Getenv(envFds); got != "2" {
		t.Fatalf("%s=%q in the child, want 2", envFds, got)
	}
	// The inherited descriptors, as the master passed them.
	inodes := map[int]string{}
	for _, fd := range []int{FirstFd, FirstFd + 1} {
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			t.Fatalf("fd %d not inherited: %v", fd, err)
		}
		if fl&unix.FD_CLOEXEC != 0 {
			t.Fatalf("fd %d inherited with FD_CLOEXEC set", fd)
		}
		inodes[fd] = fdInode(t, fd)
	}

	in, err := FromEnv()
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	defer in.Close()
	assertUnset(t)
	if got := strings.Join(in.Names(), ":"); got != "web:dns" {
		t.Errorf("Names() = %q, want web:dns", got)
	}

	ln, err := in.Listener("web")
	if err != nil {
		t.Fatalf("Listener(web): %v", err)
	}
	pc, err := in.PacketConn("dns")
	if err != nil {
		t.Fatalf("PacketConn(dns): %v", err)
	}
	if _, err := in.Listener("nope"); !errors.Is(err, ErrNoSocket) {
		t.Errorf("Listener(nope) = %v, want ErrNoSocket", err)
	}
	if _, err := in.PacketConn("web"); !errors.Is(err, ErrNoSocket) {
		t.Errorf("PacketConn(web) = %v, want ErrNoSocket (web is a stream socket)", err)
	}
	if _, err := in.Listener("dns"); !errors.Is(err, ErrNoSocket) {
		t.Errorf("Listener(dns) = %v, want ErrNoSocket (dns is a datagram socket)", err)
	}
	if got, want := ln.Addr().String(), os.Getenv("LISTENER_HELPER_WEB"); got != want {
		t.Errorf("web listens on %s, want the master's %s", got, want)
	}
	if got, want := pc.LocalAddr().String(), os.Getenv("LISTENER_HELPER_DNS"); got != want {
		t.Errorf("dns bound to %s, want the master's %s", got, want)
	}

	// FromEnv holds close-on-exec duplicates and has closed fds 3 and 4.
	// A duplicate may itself have been given number 3 or 4 (the lowest free
	// number), so an open fd 3 or 4 must be one of the duplicates.
	dupFds := map[int]string{}
	for name, c := range map[string]syscall.Conn{"web": ln.(syscall.Conn), "dns": pc.(syscall.Conn)} {
		fd := netFd(t, c)
		dupFds[fd] = name
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || fl&unix.FD_CLOEXEC == 0 {
			t.Errorf("%s: held fd %d has flags %#x, %v; want FD_CLOEXEC", name, fd, fl, err)
		}
	}
	t.Logf("FromEnv holds fds %v", dupFds)
	for _, fd := range []int{FirstFd, FirstFd + 1} {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if _, isDup := dupFds[fd]; !isDup && !errors.Is(err, unix.EBADF) {
			t.Errorf("fd %d after FromEnv: F_GETFD error %v, want EBADF", fd, err)
		}
	}
	// Exactly one descriptor per inherited socket remains: the duplicate.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for fd, inode := range inodes {
		var holders []int
		for _, e := range ents {
			n, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if s, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && s == inode {
				holders = append(holders, n)
			}
		}
		if len(holders) != 1 || dupFds[holders[0]] == "" {
			t.Errorf("socket inherited as fd %d (%s) is held by fds %v, want only FromEnv's duplicate (%v)", fd, inode, holders, dupFds)
		}
	}

	// The datagram socket works: send ourselves a datagram.
	cli, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 16)
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Errorf("dns ReadFrom = %q, %v; want ping", buf[:n], err)
	}

	// Serve exactly one connection from the shared accept queue.
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "hello from %d", os.Getpid()); err != nil {
		t.Fatalf("write greeting: %v", err)
	}
}
