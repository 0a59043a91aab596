package master

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/preforkd/preforkd/listener"
)

// MaxWorkers is the most workers a master runs. More than this on one
// machine is a configuration mistake (and would exhaust pids or fds long
// before it helped).
const MaxWorkers = 1024

// Config configures a master. The zero value runs: every field documents
// its default.
type Config struct {
	// Workers is the number of worker slots. Defaults to runtime.NumCPU().
	// At an upgrade, a count changed at run time is carried over instead.
	Workers int
	// Listen are the sockets handed to every worker, in this order (fds 3…).
	// Defaults to http=tcp://127.0.0.1:8080.
	Listen []listener.Spec
	// MetricsAddr is the host:port of the master's metrics and health
	// endpoint. Empty: none.
	MetricsAddr string
	// Control is the path of the control socket. Empty: DefaultControlPath
	// of the executable's name. "off": no control socket.
	Control string
	// PIDFile, when set, is written atomically with the master's pid once
	// its first workers are all ready, and removed at the final stop.
	PIDFile string
	// Grace is how long a stopping worker may drain before SIGKILL.
	// Defaults to 30s.
	Grace time.Duration
	// UpgradeTimeout is how long a new master may take to become ready.
	// Defaults to 1m.
	UpgradeTimeout time.Duration
	// Heartbeat, when positive, is the longest a ready worker may stay
	// silent (no WATCHDOG=1) before it is SIGKILLed and replaced. Workers
	// get it as WATCHDOG_USEC. Zero: off.
	Heartbeat time.Duration
	// StartTimeout is how long a worker may take to send READY=1 before it
	// is killed; that counts as an early death (see StartAttempts). Defaults to 1m.
	StartTimeout time.Duration
	// ReadyDelay, when positive, treats a worker that has not sent
	// READY=1 after this long as ready (for commands that never notify).
	ReadyDelay time.Duration
	// BackoffMin and BackoffMax bound the restart delay of a slot whose
	// workers die before StablePeriod. Default 100ms and 10s.
	BackoffMin, BackoffMax time.Duration
	// StartAttempts is how many times the workers of one slot may die
	// before becoming ready, while no worker of this master has ever been
	// ready, before the start fails: the master then stops and Run returns
	// an error naming the last worker's exit status and last stderr line
	// (so that systemd or Kubernetes shows the service as failed). Once
	// any worker has been ready the master never gives up on a slot.
	// Defaults to 3; negative: never give up.
	StartAttempts int
	// StablePeriod is how long a worker must have been ready for its death
	// to restart it at once and reset its slot's backoff. Defaults to 1s.
	StablePeriod time.Duration
	// Command, when set, is run as every worker through the exec shim
	// (external workers). Empty: workers are this executable in the worker
	// role, with the master's own arguments.
	Command []string
	// ExternalMetrics hands external workers (Command) a metrics socket
	// (PREFORK_METRICS_FD) and includes their answers in /metrics. Only
	// for commands that speak its protocol: the master asks, and waits up
	// to the scrape timeout for, every worker that has one. Go workers
	// built on package server always get one.
	ExternalMetrics bool
	// Balance is how Go workers share the accept queue (see the README's
	// "Accept balance"): "conns" (the default when empty), a worker
	// holding more than its share of open connections leaves new ones to
	// the others for a few milliseconds; "accepts", the same and also by
	// connections accepted, for an even spread of fresh connections at a
	// cost in throughput on a saturated machine; "off", the kernel's order.
	// External workers (Command) are never balanced.
	Balance string
	// LoadState, when set, builds the shared read-only region before any
	// worker starts (again in each new master at an upgrade).
	LoadState func() (Region, error)
	// StateKey, when set, answers a fingerprint of what LoadState would
	// build, cheaply (a file's identity and content hash, a data
	// version): at an upgrade, a new master whose key equals its
	// predecessor's takes the predecessor's sealed region over instead of
	// calling LoadState, so that the new generation starts sooner and
	// shares the old one's pages. It must change whenever the bytes
	// would; an error means "unknown" (LoadState runs).
	StateKey func() (string, error)
	// MaxRSS, when positive, is the resident set size in bytes above which
	// a worker is replaced gracefully (its replacement ready first),
	// checked every second. Zero: off.
	MaxRSS uint64
	// RequestTimeout, when positive, is handed to workers
	// (PREFORK_REQUEST_TIMEOUT): a Go worker serving HTTP through package
	// server answers a request still running after it 503 (if nothing was
	// written yet), logs its goroutine's stack once and counts it
	// (http_request_timeouts_total); with more than 3 requests stuck past
	// it, or one past 10 times it, the worker asks to be replaced. Zero: off.
	RequestTimeout time.Duration
	// MaxRequests, when positive, is handed to workers (PREFORK_MAX_REQUESTS):
	// a Go worker built on package server asks to be replaced after about
	// that many requests (plus up to 10% jitter, so that workers don't
	// recycle together). Zero: off.
	MaxRequests int
	// WorkerOutput is what becomes of the workers' stdout and stderr:
	// "text" (the default when empty), each line on the master's stream of
	// the same name, prefixed with "slot=N pid=P generation=G
	// stream=S | "; "json", each line as a JSON object with those fields
	// (a worker's own JSON object keeps its fields and gets the missing
	// ones); "inherit", the master's stdout and stderr themselves, unlabelled.
	// Labelled lines go through a bounded queue: a worker never waits for
	// the master, and what does not fit is dropped and counted.
	WorkerOutput string
	// UpgradeSurge, when positive, bounds an upgrade to Workers+UpgradeSurge
	// worker processes at any moment: the new master starts that many, and
	// the old master retires one of its own for each further one (see the
	// README's "Upgrades"). Zero: the whole new generation at once.
	UpgradeSurge int
	// Spare is how many warm spares to keep (Go workers only): workers
	// started ahead of need that wait, before the app runs, until a slot's
	// worker dies after its stable period; the spare is then promoted into
	// the slot (a message on a pipe it holds) and a new spare starts in the
	// background. Each costs about one idle worker's memory. Zero: none.
	Spare int
	// Canary, when its Duration is positive, starts every upgrade with one
	// new worker judged against the old generation (see CanaryConfig).
	Canary CanaryConfig
	// Credential, when set, is the uid/gid workers run as (supplementary
	// groups dropped). The master keeps its own.
	Credential *Credential
	// Logger receives every log line. Defaults to slog.Default().
	Logger *slog.Logger
	// Hooks are called from the supervisor's goroutine; they must not block.
	Hooks Hooks
	// Version is reported in status and logs.
	Version string
}

// Region is the sealed shared-state region handed to workers (state.Region
// satisfies it).
type Region interface {
	File() *os.File
	Size() int64
	Close() error
}

// Credential is the identity workers run as.
type Credential struct {
	UID, GID uint32
}

// Hooks observe workers. Each may be nil.
type Hooks struct {
	// WorkerStarted is called after a worker process started, and when a
	// spare (Config.Spare) is promoted into slot.
	WorkerStarted func(slot, pid, generation int)
	// WorkerExited is called after a worker was reaped; status is as
	// logged. A spare that exited before its promotion has slot -1.
	WorkerExited func(slot, pid, generation int, status string)
}

// MinHeartbeat is the shortest Heartbeat.
const MinHeartbeat = 100 * time.Millisecond

// maxUnixPath is the longest unix socket path (sun_path holds 108 bytes
// with the terminating NUL).
const maxUnixPath = 107

func (c *Config) validateControl() error {
	if c.Control == "off" {
		return nil
	}
	if len(c.Control) > maxUnixPath {
		return fmt.Errorf("%w: -control %s: %d bytes, longer than a unix socket path may be (%d): choose a shorter path", ErrConfig, c.Control, len(c.Control), maxUnixPath)
	}
	for _, l := range c.Listen {
		if l.Network == "unix" && filepath.Clean(l.Address) == filepath.Clean(c.Control) {
			return fmt.Errorf("%w: -listen %s: the same path as -control: give the control socket or the listener another path", ErrConfig, l.String())
		}
	}
	return nil
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid configuration")

func (c *Config) setDefaults() {
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if len(c.Listen) == 0 {
		c.Listen = []listener.Spec{{Name: "http", Network: "tcp", Address: "127.0.0.1:8080"}}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Grace, 30*time.Second)
	def(&c.UpgradeTimeout, time.Minute)
	def(&c.StartTimeout, time.Minute)
	def(&c.BackoffMin, 100*time.Millisecond)
	def(&c.BackoffMax, 10*time.Second)
	def(&c.StablePeriod, time.Second)
	if c.StartAttempts == 0 {
		c.StartAttempts = 3
	}
	c.Canary.setDefaults()
	if c.WorkerOutput == "" {
		c.WorkerOutput = "text"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first bad field, naming the flag that sets it, as
// an error wrapping ErrConfig (or listener.ErrSpec). Zero fields take their
// defaults first, as in Run.
func (c Config) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) validate() error {
	if c.Workers < 1 || c.Workers > MaxWorkers {
		return fmt.Errorf("%w: -workers %d: want 1 to %d", ErrConfig, c.Workers, MaxWorkers)
	}
	switch c.Balance {
	case "", "conns", "accepts", "off":
	default:
		return fmt.Errorf("%w: -balance %q: want conns, accepts or off", ErrConfig, c.Balance)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"grace", c.Grace}, {"upgrade-timeout", c.UpgradeTimeout}, {"heartbeat", c.Heartbeat},
		{"start-timeout", c.StartTimeout}, {"ready-delay", c.ReadyDelay}, {"backoff-min", c.BackoffMin},
		{"backoff-max", c.BackoffMax}, {"stable-period", c.StablePeriod}, {"request-timeout", c.RequestTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("%w: -%s %v: must not be negative", ErrConfig, d.name, d.v)
		}
	}
	if c.Heartbeat > 0 && c.Heartbeat < MinHeartbeat {
		return fmt.Errorf("%w: -heartbeat %v: below %v (workers beat every third of it, so a shorter one kills healthy workers): use 0 (off) or at least %v", ErrConfig, c.Heartbeat, MinHeartbeat, MinHeartbeat)
	}
	if err := c.validateControl(); err != nil {
		return err
	}
	switch c.WorkerOutput {
	case "text", "json", "inherit":
	default:
		return fmt.Errorf("%w: -worker-output %q: want label or inherit", ErrConfig, c.WorkerOutput)
	}
	if c.UpgradeSurge < 0 || c.UpgradeSurge > MaxWorkers {
		return fmt.Errorf("%w: -upgrade-surge %d: want 0 (all at once) to %d", ErrConfig, c.UpgradeSurge, MaxWorkers)
	}
	if c.Spare < 0 || c.Spare > MaxWorkers {
		return fmt.Errorf("%w: -spare %d: want 0 (none) to %d", ErrConfig, c.Spare, MaxWorkers)
	}
	if c.Spare > 0 && len(c.Command) > 0 {
		return fmt.Errorf("%w: -spare %d with a worker command: a spare waits inside the Go worker runtime (package worker) before its app runs, which an external command cannot do; use -spare 0", ErrConfig, c.Spare)
	}
	if err := c.Canary.validate(c.UpgradeTimeout); err != nil {
		return err
	}
	if c.BackoffMax < c.BackoffMin {
		return fmt.Errorf("%w: -backoff-max %v is below -backoff-min %v", ErrConfig, c.BackoffMax, c.BackoffMin)
	}
	return listener.ValidateSet(c.Listen)
}

// DefaultControlPath is where a master of the program name puts its
// control socket, and where its ctl looks for it: name.sock in
// $XDG_RUNTIME_DIR when that is set; else, for root, in /run/name/; else in
// a private directory os.TempDir()/name-UID/ — never a guessable file in a
// world-writable directory. The directory (not $XDG_RUNTIME_DIR) is created
// with mode 0700 if it does not exist; one that exists must belong to this
// user and be writable by no one else, or the error says so.
func DefaultControlPath(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("%w: program name %q cannot name a control socket: set -control", ErrConfig, name)
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, name+".sock"), nil
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("%s-%d", name, os.Geteuid()))
	if os.Geteuid() == 0 {
		dir = filepath.Join("/run", name)
	}
	if err := privateDir(dir); err != nil {
		return "", fmt.Errorf("control socket directory %s: %w (set -control to use another path)", dir, err)
	}
	return filepath.Join(dir, name+".sock"), nil
}
