//go:build linux

package worker

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/preforkd/preforkd/internal/aggregate"
	"github.com/preforkd/preforkd/internal/balance"
	"github.com/preforkd/preforkd/internal/contract"
	"github.com/preforkd/preforkd/internal/sdnotify"
	"github.com/preforkd/preforkd/internal/sockets"
	"github.com/preforkd/preforkd/state"
	"golang.org/x/sys/unix"
)

// New takes over what the master handed this process (see package
// internal/contract for the names) and unsets the contract's environment
// variables, so that the worker's own children don't inherit them: the
// listeners, the shared state (mapped read-only), the metrics socket
// (served from Options.Registry), the notify socket and the lifeline. It
// starts watching for SIGTERM/SIGINT and for the master's death. Call Close
// when done. Outside a worker it returns ErrNotWorker.
func New(opts Options) (*Worker, error) {
	if !IsWorker() {
		return nil, ErrNotWorker
	}
	w := newWorker(opts)
	get := func(k string) string { v := os.Getenv(k); os.Unsetenv(k); return v }
	w.slot, _ = strconv.Atoi(get(contract.Worker))
	w.gen, _ = strconv.Atoi(get(contract.Generation))
	var err error
	if w.grace, err = time.ParseDuration(get(contract.Grace)); err != nil || w.grace <= 0 {
		w.grace = 30 * time.Second
	}
	stateFd, stateSize := get(contract.StateFd), get(contract.StateSize)
	spareFd := get(contract.SpareFd)
	metricsFd, masterFd := get(contract.MetricsFd), get(contract.MasterFd)
	balanceFd := get(contract.BalanceFd)
	get(contract.MasterPid)
	notifyAddr := get("NOTIFY_SOCKET")
	if us, err := strconv.ParseInt(get("WATCHDOG_USEC"), 10, 64); err == nil && us > 0 {
		w.watchdog = time.Duration(us) * time.Microsecond
	}
	get("WATCHDOG_PID")
	if d, err := time.ParseDuration(get(contract.RequestTimeout)); err == nil && d > 0 {
		w.reqTimeout = d
	}
	if n, err := strconv.Atoi(get(contract.MaxRequests)); err == nil && n > 0 {
		// Up to 10% jitter, so that workers started together don't all
		// recycle at once.
		w.maxReqs = n + rand.IntN(n/10+1)
	}
	// The master reads the worker's stderr through a pipe (it keeps the
	// last line for a failed start's message). Once the master is gone a
	// write to it would kill a Go program by SIGPIPE — in the middle of
	// the drain that the master's death starts. Ignored, the write just
	// fails.
	signal.Ignore(unix.SIGPIPE)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)
	w.stop = func() { signal.Stop(sigs) }
	if err := w.takeOver(notifyAddr, masterFd, metricsFd, stateFd, stateSize); err != nil {
		w.Close()
		return nil, err
	}
	if err := w.joinBoard(balanceFd); err != nil {
		w.Close()
		return nil, err
	}
	if spareFd != "" {
		if err := w.awaitPromotion(spareFd, sigs); err != nil {
			w.Close()
			return nil, err
		}
	}
	w.log = w.log.With("slot", w.slot, "pid", os.Getpid(), "generation", w.gen)
	w.wg.Add(1)
	go w.watch(sigs)
	return w, nil
}

// takeOver takes the inherited descriptors.
func (w *Worker) takeOver(notifyAddr, masterFd, metricsFd, stateFd, stateSize string) error {
	in, err := sockets.FromEnv()
	if err != nil {
		return err
	}
	w.socks = in
	conn, err := sdnotify.Dial(notifyAddr)
	if err != nil {
		return err
	}
	if conn != nil {
		w.notify = conn
	}
	if fd, err := takeFd(masterFd); err != nil {
		return fmt.Errorf("%s: %w", contract.MasterFd, err)
	} else if fd >= 0 {
		// Through the poller, so that Close interrupts the read.
		unix.SetNonblock(fd, true)
		w.life = os.NewFile(uintptr(fd), "lifeline")
	}
	if fd, err := takeFd(metricsFd); err != nil {
		return fmt.Errorf("%s: %w", contract.MetricsFd, err)
	} else if fd >= 0 {
		f := os.NewFile(uintptr(fd), "metrics")
		if w.opts.Registry == nil {
			f.Close() // nothing to serve: the master counts timeouts
		} else {
			w.metrics = aggregate.NewWorkerServer(f, w.opts.Registry)
		}
	}
	fd, err := takeFd(stateFd)
	if err != nil || fd < 0 {
		if err != nil {
			return fmt.Errorf("%s: %w", contract.StateFd, err)
		}
		return nil
	}
	defer unix.Close(fd) // the mapping stays valid after the descriptor is closed
	size, err := strconv.ParseInt(stateSize, 10, 64)
	if err != nil || size < 0 {
		return fmt.Errorf("%s=%q: not a size", contract.StateSize, stateSize)
	}
	m, err := state.MapFd(fd, size)
	if err != nil {
		return fmt.Errorf("shared state: %w", err)
	}
	w.state, w.unmap = m.Bytes(), m.Close
	return nil
}

// joinBoard maps the master's balance board, when it handed one, and takes
// this worker's place on it. The mapping lives as long as the process:
// connections count themselves out of it until they close.
func (w *Worker) joinBoard(fdVar string) error {
	fd, err := takeFd(fdVar)
	if err != nil || fd < 0 {
		if err != nil {
			return fmt.Errorf("%s: %w", contract.BalanceFd, err)
		}
		return nil
	}
	defer unix.Close(fd)
	b, err := balance.Map(fd)
	if err != nil {
		return err
	}
	if p := b.Join(os.Getpid(), balance.Policy{}); p != nil {
		w.balance = p
	} else {
		w.log.Warn("the balance board is full: this worker accepts without balancing")
	}
	return nil
}

// awaitPromotion is a spare's wait (-spare): everything the app needs is
// set up, and the app has not run. It tells the master it waits, then
// blocks until the master names this worker's slot on the pipe. A spare
// that is stopped (SIGTERM, SIGINT) or loses its master (EOF) before that
// exits 0 here: it has nothing to drain.
func (w *Worker) awaitPromotion(fdVar string, sigs chan os.Signal) error {
	fd, err := takeFd(fdVar)
	if err != nil {
		return fmt.Errorf("%s: %w", contract.SpareFd, err)
	}
	f := os.NewFile(uintptr(fd), "spare")
	defer f.Close()
	// Map every page of the state now, while nothing waits for this
	// process: the app's first pass over it (a table's validation, say)
	// then takes no page fault. Measured with the demo's 6 MB table on this
	// VM: its open took 9–15 ms after a promotion, nearly all of it in
	// faults. The cost is the spare's page tables over the whole state
	// (2 MiB per GiB with 4 KiB pages), as if it had read it all; a kernel
	// without MADV_POPULATE_READ (before 5.14) leaves the faults for later.
	if len(w.state) > 0 {
		unix.Madvise(w.state, unix.MADV_POPULATE_READ)
	}
	if w.notify != nil {
		w.notify.Send(contract.SpareVar + "=waiting")
	}
	line := make(chan string, 1)
	go func() {
		b, _ := bufio.NewReader(f).ReadString('\n')
		line <- b
	}()
	select {
	case b := <-line:
		slot, err := strconv.Atoi(strings.TrimSuffix(b, "\n"))
		if err != nil || slot < 0 {
			if b == "" { // EOF: the master is gone
				w.Close()
				os.Exit(0)
			}
			return fmt.Errorf("%s: promotion %q: not a slot", contract.SpareFd, b)
		}
		w.slot = slot
		return nil
	case <-sigs:
		w.Close()
		os.Exit(0)
	}
	return nil
}

// takeFd parses an inherited descriptor number and sets close-on-exec on
// it (ExtraFiles arrive with it cleared). -1 when v is empty.
func takeFd(v string) (int, error) {
	if v == "" {
		return -1, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return -1, fmt.Errorf("%q is not a descriptor", v)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return -1, fmt.Errorf("descriptor %d: %w", fd, err)
	}
	return fd, nil
}

// watch ends the context on SIGTERM/SIGINT or the master's death.
func (w *Worker) watch(sigs chan os.Signal) {
	defer w.wg.Done()
	lifeEOF := make(chan struct{})
	if f, ok := w.life.(*os.File); ok && f != nil {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			var b [1]byte
			for {
				_, err := f.Read(b[:])
				if err == io.EOF {
					close(lifeEOF)
					return
				}
				if err != nil {
					return // closed by Close
				}
			}
		}()
	}
	select {
	case sig := <-sigs:
		w.log.Info("draining", "signal", sig.String())
		w.cancel(ErrTerminated)
	case <-lifeEOF:
		w.log.Warn("master is gone; draining")
		w.cancel(ErrMasterGone)
	case <-w.quit:
		w.cancel(ErrClosed)
	}
}
