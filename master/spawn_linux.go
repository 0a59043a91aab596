//go:build linux

package master

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/preforkd/preforkd/internal/contract"
	"github.com/preforkd/preforkd/internal/sockets"
	"golang.org/x/sys/unix"
)

// spawnSpec builds what every worker of this master gets: the hand-off
// contract of package internal/contract.
func (m *master) spawnSpec() spawnSpec {
	sp := spawnSpec{path: "/proc/self/exe", args: os.Args, cred: m.cfg.Credential}
	env := workerEnv(os.Environ())
	if len(m.cfg.Command) > 0 {
		sp.args = append([]string{os.Args[0]}, m.cfg.Command...)
		env = append(env, contract.ExecShim+"=1")
	}
	sp.files = sockets.Files(m.res.socks)
	sp.nonblock = sp.files
	env = append(env, sockets.Env(m.res.socks)...)
	if r := m.res.region; r != nil {
		env = append(env, contract.StateFd+"="+strconv.Itoa(3+len(sp.files)), contract.StateSize+"="+strconv.FormatInt(r.Size(), 10))
		sp.files = append(sp.files, r.File())
	}
	if b := m.res.board; b != nil {
		env = append(env, contract.BalanceFd+"="+strconv.Itoa(3+len(sp.files)))
		sp.files = append(sp.files, b.File())
	}
	env = append(env, contract.MasterFd+"="+strconv.Itoa(3+len(sp.files)))
	sp.files = append(sp.files, m.res.lifeR)
	sp.nonblock = append(sp.nonblock, m.res.lifeR)
	if len(m.cfg.Command) == 0 || m.cfg.ExternalMetrics {
		// An external command that does not speak the metrics protocol
		// would make every scrape wait the full timeout for it.
		sp.perWorker = m.metricsSocket
	}
	env = append(env,
		"NOTIFY_SOCKET="+m.res.notify.addr,
		contract.MasterPid+"="+strconv.Itoa(os.Getpid()),
		contract.Grace+"="+m.cfg.Grace.String(),
	)
	if os.Getenv("GOMAXPROCS") == "" {
		// N workers share the CPUs: one P per worker's share (as fasthttp's
		// prefork does), so that idle Ps don't spin against the other
		// workers. A GOMAXPROCS in the master's environment wins. The
		// count is fixed at the master's start (a scaled worker count
		// takes effect at the next upgrade).
		env = append(env, "GOMAXPROCS="+strconv.Itoa(max(1, runtime.NumCPU()/m.cfg.Workers)))
	}
	if m.cfg.RequestTimeout > 0 {
		env = append(env, contract.RequestTimeout+"="+m.cfg.RequestTimeout.String())
	}
	if m.cfg.MaxRequests > 0 {
		env = append(env, contract.MaxRequests+"="+strconv.Itoa(m.cfg.MaxRequests))
	}
	if m.cfg.Heartbeat > 0 {
		env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(m.cfg.Heartbeat.Microseconds(), 10))
	}
	sp.env = env
	return sp
}

// spawnSpec is what every worker of a master gets.
type spawnSpec struct {
	path  string     // executable to run
	args  []string   // argv, including argv[0]
	env   []string   // shared environment (filtered, contract variables added)
	files []*os.File // ExtraFiles: listeners, then state, then lifeline
	cred  *Credential
	// perWorker, when set, returns extra files and environment for one
	// worker (its metrics socket) and a function run after the start.
	perWorker func(slot int, nextFd int) (files []*os.File, env []string, after func(pid int, err error), err error)
	// nonblock are the sockets whose blocking mode must survive a start.
	nonblock []*os.File
	// out and errOut, when set, receive the workers' stdout and stderr
	// labelled (Config.WorkerOutput); nil: workers write to the master's
	// own stdout, and its stderr through a pipe that keeps the last line.
	out, errOut *outputSink
	json        bool // labelled lines as JSON objects
}

// execProcs starts workers with os/exec from one locked OS thread and
// reports their ends on exits.
type execProcs struct {
	spec  spawnSpec
	exits chan<- exitEvent
	reqs  chan spawnReq
	wg    sync.WaitGroup // wait goroutines
	quit  chan struct{}
	once  sync.Once
	grace time.Duration // for what a worker leaves behind (descendants_linux.go)
	log   *slog.Logger
	// mu guards live (the pids started and not yet reaped) and adopted
	// (the processes the reaper has sent SIGTERM, and when). The reaper
	// holds it too, so that it never touches a worker that was started
	// but not yet recorded.
	mu sync.Mutex
	// startMu is held shared by every start (concurrent starts run on
	// the spawner threads) and exclusively by the reaper's scan.
	startMu sync.RWMutex
	live    map[int]bool
	adopted map[int]time.Time
	// spares are the started spares not yet promoted, by pid (under mu).
	spares map[int]*spareProc
	// promoted and spareGone, when set, are told of a spare's promotion
	// (after its message was written) and of an unpromoted spare's exit.
	promoted  func(pid, slot int)
	spareGone func(pid int)
}

// spareProc is what the master keeps of a spare until its promotion.
type spareProc struct {
	promote *os.File   // write end of its pipe (PREFORK_SPARE_FD)
	labels  []*labeler // its output labels, relabelled at the promotion
}

type spawnReq struct {
	slot, gen int
	spare     bool
	reply     chan spawnRes
}

type spawnRes struct {
	pid int
	err error
}

func newExecProcs(spec spawnSpec, exits chan<- exitEvent, grace time.Duration, log *slog.Logger) *execProcs {
	p := &execProcs{spec: spec, exits: exits, reqs: make(chan spawnReq), quit: make(chan struct{}),
		grace: grace, log: log, live: map[int]bool{}, adopted: map[int]time.Time{}, spares: map[int]*spareProc{}}
	for range spawners() {
		p.wg.Add(1)
		go p.spawner()
	}
	return p
}

// spawners is how many threads start workers: a generation's workers
// start in parallel, each fork+exec taking one CPU while the kernel loads
// the binary.
func spawners() []struct{} { return make([]struct{}, min(max(runtime.NumCPU(), 1), 4)) }

// spawner starts workers from a locked OS thread (one of spawners()). An
// external worker's exec shim sets PR_SET_PDEATHSIG, which fires when the
// thread that started it exits (golang/go#27505): these threads live as
// long as the master does.
func (p *execProcs) spawner() {
	defer p.wg.Done()
	runtime.LockOSThread()
	// No UnlockOSThread: when this goroutine returns at the master's exit,
	// the thread ends with it, and any external worker still alive gets its
	// parent-death signal.
	for {
		select {
		case r := <-p.reqs:
			pid, err := p.startLocked(r.slot, r.gen, r.spare)
			r.reply <- spawnRes{pid, err}
		case <-p.quit:
			return
		}
	}
}

func (p *execProcs) start(slot, gen int) (int, error) { return p.request(slot, gen, false) }

// startAll starts a worker for each slot, in parallel on the spawner
// threads; the results are in the order of slots.
func (p *execProcs) startAll(slots []int, gen int) []spawnRes {
	out := make([]spawnRes, len(slots))
	var wg sync.WaitGroup
	for i, slot := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].pid, out[i].err = p.request(slot, gen, false)
		}()
	}
	wg.Wait()
	return out
}

// startSpare starts a spare: a worker that waits, before its app runs,
// for promote to name its slot (slot -1 until then).
func (p *execProcs) startSpare(gen int) (int, error) { return p.request(-1, gen, true) }

func (p *execProcs) request(slot, gen int, spare bool) (int, error) {
	r := spawnReq{slot: slot, gen: gen, spare: spare, reply: make(chan spawnRes, 1)}
	select {
	case p.reqs <- r:
	case <-p.quit:
		return 0, errStopping
	}
	res := <-r.reply
	return res.pid, res.err
}

func (p *execProcs) startLocked(slot, gen int, spare bool) (int, error) {
	cmd, after, err := p.command(slot, gen)
	if err != nil {
		return 0, fmt.Errorf("start worker %d: %w", slot, err)
	}
	var promote *os.File
	if spare {
		r, w, err := sparePipe()
		if err != nil {
			if after != nil {
				after(0, err)
			}
			return 0, fmt.Errorf("start a spare: %w", err)
		}
		defer r.Close() // the spare has its copy once started
		promote = w
		cmd.Env = append(cmd.Env, contract.SpareFd+"="+strconv.Itoa(3+len(cmd.ExtraFiles)))
		cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	}
	var labels []*labeler
	if p.spec.out != nil {
		labels = []*labeler{newLabeler(p.spec.out, p.spec.json, "stdout", slot, gen), newLabeler(p.spec.errOut, p.spec.json, "stderr", slot, gen)}
		cmd.Stdout, cmd.Stderr = labels[0], &lastLine{w: labels[1]}
	}
	nonblock := p.spec.nonblock
	flags := make([]int, len(nonblock))
	for i, f := range nonblock {
		flags[i] = fcntlFlags(f)
	}
	p.startMu.RLock()
	err = cmd.Start()
	p.mu.Lock()
	if err == nil {
		p.live[cmd.Process.Pid] = true
		if spare {
			p.spares[cmd.Process.Pid] = &spareProc{promote: promote, labels: labels}
		}
	} else if promote != nil {
		promote.Close()
	}
	p.mu.Unlock()
	p.startMu.RUnlock()
	// os.StartProcess calls Fd on every ExtraFiles entry; should that have
	// changed a shared socket's blocking mode (a File made by net would),
	// put it back as it was: O_NONBLOCK belongs to the open file
	// description that the master and every worker share.
	for i, f := range nonblock {
		if now := fcntlFlags(f); flags[i] >= 0 && now >= 0 && now&unix.O_NONBLOCK != flags[i]&unix.O_NONBLOCK {
			unix.SetNonblock(int(f.Fd()), flags[i]&unix.O_NONBLOCK != 0)
		}
	}
	started := 0
	if err == nil {
		started = cmd.Process.Pid
	}
	for _, l := range labels {
		l.started(started)
	}
	if after != nil {
		after(started, err)
	}
	if err != nil {
		return 0, fmt.Errorf("start worker %d: %w", slot, err)
	}
	pid := cmd.Process.Pid
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		cmd.Wait() // the output has been copied (or cut after WaitDelay)
		for _, l := range labels {
			l.flush()
		}
		p.mu.Lock()
		delete(p.live, pid)
		sp := p.spares[pid]
		delete(p.spares, pid)
		p.mu.Unlock()
		if sp != nil {
			sp.promote.Close()
			if p.spareGone != nil {
				p.spareGone(pid)
			}
		}
		p.exits <- exitEvent{pid: pid, status: statusOf(cmd.ProcessState), lastLine: cmd.Stderr.(*lastLine).String()}
		// What the worker started and left in its process group ends
		// with it (its pgid stays reserved while the group has members).
		if stopGroup(pid, p.grace) {
			p.log.Warn("stopping the processes a worker left behind", "slot", slot, "pid", pid, "generation", gen)
		}
	}()
	return pid, nil
}

// command builds the worker's command; after, when not nil, must be called
// once the start has been tried.
func (p *execProcs) command(slot, gen int) (*exec.Cmd, func(int, error), error) {
	sp := p.spec
	cmd := &exec.Cmd{
		Path:   sp.path,
		Args:   sp.args,
		Stdout: os.Stdout,
		// Through a pipe, to remember the last line (a failed start names
		// it). Wait waits for the copy; WaitDelay bounds that when a
		// worker's child keeps the pipe open.
		Stderr:     &lastLine{w: os.Stderr},
		WaitDelay:  time.Second,
		ExtraFiles: sp.files,
		// Own process group: a terminal's ^C reaches only the master,
		// which then drains the workers in order.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if sp.cred != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: sp.cred.UID, Gid: sp.cred.GID, Groups: []uint32{}}
	}
	env := make([]string, 0, len(sp.env)+4)
	env = append(env, sp.env...)
	env = append(env, contract.Worker+"="+strconv.Itoa(slot), contract.Generation+"="+strconv.Itoa(gen))
	var after func(int, error)
	if sp.perWorker != nil {
		files, wenv, a, err := sp.perWorker(slot, 3+len(sp.files))
		if err != nil {
			return nil, nil, err
		}
		cmd.ExtraFiles = append(append([]*os.File(nil), sp.files...), files...)
		env = append(env, wenv...)
		after = a
	}
	cmd.Env = env
	return cmd, after, nil
}

func fcntlFlags(f *os.File) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1
	}
	fl := -1
	rc.Control(func(fd uintptr) { fl, _ = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	return fl
}

func statusOf(ps *os.ProcessState) exitStatus {
	if ps == nil {
		return exitStatus{code: -1}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitStatus{code: -1, signal: unix.Signal(ws.Signal())}
	}
	return exitStatus{code: ps.ExitCode()}
}

// rss is the worker's resident set size in bytes, from /proc/<pid>/statm
// (cheap enough to read every second for every worker).
func (p *execProcs) rss(pid int) (uint64, error) {
	return readRSS(pid)
}

func (p *execProcs) signal(pid int, sig unix.Signal) error {
	err := unix.Kill(pid, sig)
	if errors.Is(err, unix.ESRCH) {
		return nil // already gone; its exit is on the way
	}
	return err
}

// promote tells spare pid that it is now slot's worker: one line on its
// pipe. The spare then runs the app, which sends READY=1 once it serves.
func (p *execProcs) promote(pid, slot int) error {
	p.mu.Lock()
	sp := p.spares[pid]
	delete(p.spares, pid)
	p.mu.Unlock()
	if sp == nil {
		return fmt.Errorf("spare %d: gone", pid)
	}
	defer sp.promote.Close()
	if _, err := sp.promote.Write([]byte(strconv.Itoa(slot) + "\n")); err != nil {
		// It died; its wait goroutine no longer finds it, so its metrics
		// socket is released here.
		if p.spareGone != nil {
			p.spareGone(pid)
		}
		return fmt.Errorf("spare %d: %w", pid, err)
	}
	for _, l := range sp.labels {
		l.setSlot(slot)
	}
	if p.promoted != nil {
		p.promoted(pid, slot)
	}
	return nil
}

// sparePipe is a spare's promotion pipe: the read end for the spare, the
// write end (non-blocking: a line fits in the pipe's buffer, and the
// master never waits on a spare) for the master.
func sparePipe() (r, w *os.File, err error) {
	var fd [2]int
	if err := unix.Pipe2(fd[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	unix.SetNonblock(fd[1], true)
	return os.NewFile(uintptr(fd[0]), "spare"), os.NewFile(uintptr(fd[1]), "spare-w"), nil
}

// close stops the spawner and waits for every wait goroutine; call it after
// the supervisor has seen every worker exit.
func (p *execProcs) close() {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
}

// workerEnv returns the master's environment without the variables that
// belong to the master's own supervisor (systemd's, tableflip's) or to a
// previous hand-off, so that a worker never mistakes itself for a master.
func workerEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == contract.Tableflip, k == "NOTIFY_SOCKET", k == "WATCHDOG_USEC", k == "WATCHDOG_PID",
			strings.HasPrefix(k, "LISTEN_"), strings.HasPrefix(k, contract.Prefix):
			continue
		}
		out = append(out, kv)
	}
	return out
}
