//go:build linux

package integration

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
)

// balanceArgs are the flags of the balance tests (a variable, so that
// the test can be run against -balance off to see it fail).
var balanceArgs = []string{"-balance", "conns"}

var reWorker = regexp.MustCompile(`preforkd demo worker=(\d+) `)

// keepAliveSplit opens n connections at once, sends one request on each,
// and counts the connections by the worker slot that answered; the
// connections stay open until the test ends.
func keepAliveSplit(t *testing.T, addr string, n int) map[int]int {
	t.Helper()
	var mu sync.Mutex
	split := map[int]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { c.Close() })
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Errorf("no answer: %v", err)
					return
				}
				if m := reWorker.FindStringSubmatch(line); m != nil {
					slot, _ := strconv.Atoi(m[1])
					mu.Lock()
					split[slot]++
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return split
}

// With the accept balance (the default), a burst of keep-alive
// connections is spread over the workers instead of landing on whichever
// worker was on a CPU (measured without it: 31/1, 29/3, 32/0 of 32 over 2
// workers). The bound leaves room for a loaded machine: a worker over its
// share waits at most 5 ms for the other.
func TestBalanceSpreadsKeepAliveConnections(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2, Args: balanceArgs})
	split := keepAliveSplit(t, fmt.Sprintf("127.0.0.1:%d", m.Port), 32)
	t.Logf("32 keep-alive connections by worker: %v", split)
	if split[0] < 10 || split[1] < 10 {
		t.Errorf("connections per worker %v: want each of the 2 workers to hold at least 10 of 32", split)
	}
}

// Connections waiting in the accept queue when a worker is killed are
// served by the others: the queue belongs to the socket the master holds,
// not to any worker. Both workers are stopped (SIGSTOP) while the
// connections queue, one is then killed, the other resumed.
func TestQueuedConnectionsSurviveAWorkerKill(t *testing.T) {
	m := startMaster(t, Opts{Workers: 2})
	pids := m.Status().ReadyPIDs()
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	for _, pid := range pids { // the stop is asynchronous: wait until it took
		testutil.WaitFor(t, 10*time.Second, "the worker stopped", func() bool {
			p, ok := testutil.ProcInfo(pid)
			return ok && p.State == 'T'
		})
	}
	defer func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	const n = 10
	answers := make(chan error, n)
	for range n {
		go func() {
			code, _, err := get(fresh(), m.URL("/"))
			if err == nil && code != 200 {
				err = fmt.Errorf("status %d", code)
			}
			answers <- err
		}()
	}
	time.Sleep(300 * time.Millisecond) // the connections are queued
	syscall.Kill(pids[0], syscall.SIGKILL)
	syscall.Kill(pids[1], syscall.SIGCONT)
	failed := 0
	for range n {
		select {
		case err := <-answers:
			if err != nil {
				failed++
				t.Logf("request: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a queued request got no answer in 20s")
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d queued requests failed when a worker was killed", failed, n)
	}
}
