package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/preforkd/preforkd/listener"
	"github.com/preforkd/preforkd/master"
	"github.com/preforkd/preforkd/state"
)

// options are the parsed command line.
type options struct {
	workers         int
	listen          listFlag
	metrics         string
	pidfile         string
	control         string
	grace           time.Duration
	upgradeTimeout  time.Duration
	heartbeat       time.Duration
	startTimeout    time.Duration
	readyDelay      time.Duration
	backoffMin      time.Duration
	backoffMax      time.Duration
	stable          time.Duration
	startAttempts   int
	externalMetrics bool
	balance         string
	statePath       string
	logFormat       string
	logLevel        string
	showVersion     bool
	command         []string
	specs           []listener.Spec
	user, group     string
	maxRSS          string
	maxRequests     int
	canary          master.CanaryConfig
	upgradeSurge    int
	spare           int
	statePages      string
	requestTimeout  time.Duration
	workerOutput    string
	cred            *master.Credential
	maxRSSBytes     uint64
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

const usageText = `Usage:
  NAME [flags] [-- COMMAND ARGS...]   supervise workers (the app, or COMMAND)
  NAME ctl [-control PATH] status [-json] | top [-json] | reload [-canary D] | restart | scale N | stop
  NAME state build -in data.tsv -out table.bin

Flags:
`

func parseFlags(p Program, args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet(p.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.workers, "workers", runtime.NumCPU(), "number of worker processes")
	fs.Var(&o.listen, "listen", "a socket for the workers, NAME=SCHEME://ADDR (tcp, tcp4, tcp6, unix, udp); repeatable (default http=tcp://127.0.0.1:8080)")
	fs.StringVar(&o.metrics, "metrics", "127.0.0.1:9100", "HOST:PORT of the master's /metrics and /healthz, or off")
	fs.StringVar(&o.pidfile, "pidfile", "", "write the master's pid here (atomically) once its workers are ready")
	fs.StringVar(&o.control, "control", "", "control socket path, or off (default: NAME.sock in $XDG_RUNTIME_DIR, else /run/NAME/ for root, else a private directory; see ctl)")
	fs.DurationVar(&o.grace, "grace", 30*time.Second, "how long a stopping worker may drain before SIGKILL")
	fs.DurationVar(&o.upgradeTimeout, "upgrade-timeout", time.Minute, "how long a new master may take to become ready at an upgrade")
	fs.DurationVar(&o.heartbeat, "heartbeat", 0, "kill and replace a ready worker silent (no WATCHDOG=1) this long; 0 = off")
	fs.DurationVar(&o.startTimeout, "start-timeout", time.Minute, "kill a worker not ready (no READY=1) this long after its start")
	fs.DurationVar(&o.readyDelay, "ready-delay", 0, "treat a worker as ready this long after its start even without READY=1 (for commands that never notify); 0 = wait for READY=1")
	fs.DurationVar(&o.backoffMin, "backoff-min", 100*time.Millisecond, "first restart delay of a slot whose workers die early")
	fs.DurationVar(&o.backoffMax, "backoff-max", 10*time.Second, "longest restart delay")
	fs.IntVar(&o.startAttempts, "start-attempts", 3, "while no worker has ever been ready, a slot whose workers die this many times before ready fails the start (exit 1); 0: never give up")
	fs.DurationVar(&o.stable, "stable-period", time.Second, "a worker ready this long is restarted at once when it dies, and resets its slot's backoff")
	fs.StringVar(&o.statePath, "state", "", "file loaded into the shared read-only state region (default: the program's own, if any)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.StringVar(&o.user, "user", "", "run workers as this user (name or uid); the master keeps its own identity (root, to bind)")
	fs.StringVar(&o.group, "group", "", "run workers with this group (name or gid; default: -user's primary group)")
	fs.StringVar(&o.maxRSS, "max-rss", "", "replace a worker whose resident memory exceeds SIZE (e.g. 512MiB, 2G); its replacement is ready first")
	fs.StringVar(&o.balance, "balance", "conns", "how Go workers share the accept queue: conns (one holding more than its share of open connections leaves new ones to the others for up to 5ms), accepts (also by connections accepted: fresh connections spread evenly, fewer requests/s on a saturated machine), off")
	fs.BoolVar(&o.externalMetrics, "external-metrics", false, "give external workers (-- COMMAND) a metrics socket (PREFORK_METRICS_FD) and wait for their answers at each scrape; only for commands that speak its protocol")
	fs.IntVar(&o.maxRequests, "max-requests", 0, "a Go worker asks to be replaced after about N requests (+ up to 10% jitter); 0 = off")
	fs.StringVar(&o.workerOutput, "worker-output", "label", "workers' stdout and stderr: label (every line with its worker's slot, pid and generation, as text or, with -log-format json, as JSON) or inherit (the master's streams, unlabelled)")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 0, "Go HTTP workers answer a request still running after D with 503 (if nothing was written), log its stack and count it; more than 3 stuck (or one past 10×D) recycle the worker; 0 = off")
	fs.StringVar(&o.statePages, "state-pages", "auto", "pages of the shared state region: auto (transparent huge pages if the host allows them, else 4 KiB), hugetlb (the host's reserved huge pages first, if enough are free), 4k")
	fs.IntVar(&o.spare, "spare", 0, "keep N warm spares (Go workers): started and waiting, one takes the slot of a worker that dies after -stable-period (a message, not a process start), and a new spare starts behind it; each costs about one idle worker's memory; 0 = none")
	fs.IntVar(&o.upgradeSurge, "upgrade-surge", 0, "at most -workers + N worker processes during an upgrade: the old generation retires one worker for each new one beyond N; 0 = start the new generation at once")
	fs.DurationVar(&o.canary.Duration, "canary", 0, "start each upgrade with one new worker serving beside the old generation this long, judged before the rest start (rolled back on a crash or worse HTTP figures); 0 = off")
	fs.Float64Var(&o.canary.Max5xx, "canary-max-5xx", 1, "percentage points by which the canary's 5xx ratio may exceed the old generation's")
	fs.IntVar(&o.canary.MinRequests, "canary-min-requests", 100, "HTTP requests the canary must serve for its figures to be judged (else only its exits count)")
	fs.Float64Var(&o.canary.MaxP99Ratio, "canary-max-p99-ratio", 0, "the canary's p99 latency may be at most this times the old generation's; 0 = not judged")
	if p.Flags != nil {
		p.Flags(fs)
	}
	// A bad flag gets one line, not the whole usage: Usage prints nothing
	// during Parse, and the help text only on -h.
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, strings.ReplaceAll(usageText, "NAME", p.Name))
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, usageError{fmt.Errorf("%v (see %s -h)", err, p.Name)}
	}
	o.command = fs.Args()
	if err := o.check(); err != nil {
		return nil, usageError{err}
	}
	return o, nil
}

func (o *options) check() error {
	// In the library 0 means "one per CPU"; on the command line it is a
	// mistake (the default is already one per CPU).
	if o.workers < 1 {
		return fmt.Errorf("-workers %d: want a number from 1 to %d", o.workers, master.MaxWorkers)
	}
	if len(o.listen) == 0 {
		o.listen = listFlag{"http=tcp://127.0.0.1:8080"}
	}
	for _, l := range o.listen {
		sp, err := listener.Parse(l)
		if err != nil {
			return fmt.Errorf("-listen: %w", err)
		}
		o.specs = append(o.specs, sp)
	}
	if o.metrics != "off" {
		if _, err := listener.Parse("metrics=tcp://" + o.metrics); err != nil {
			return fmt.Errorf("-metrics %q: want HOST:PORT or off", o.metrics)
		}
	}
	if o.workerOutput != "label" && o.workerOutput != "inherit" {
		return fmt.Errorf("-worker-output %q: want label or inherit", o.workerOutput)
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return fmt.Errorf("-log-format %q: want text or json", o.logFormat)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("-log-level %q: want debug, info, warn or error", o.logLevel)
	}
	if o.startAttempts < 0 {
		return fmt.Errorf("-start-attempts %d: want 0 (never give up) or more", o.startAttempts)
	}
	if o.grace <= 0 {
		return fmt.Errorf("-grace %v: want a positive duration (the time a stopping worker gets before SIGKILL)", o.grace)
	}
	if o.maxRequests < 0 {
		return fmt.Errorf("-max-requests %d: must not be negative", o.maxRequests)
	}
	pages := map[string]string{"auto": state.PagesTHP, "hugetlb": state.PagesHugeTLB, "4k": state.Pages4K}[o.statePages]
	if pages == "" {
		return fmt.Errorf("-state-pages %q: want auto, hugetlb or 4k", o.statePages)
	}
	state.SetPages(pages) // the master builds its regions in this process
	if o.maxRSS != "" {
		n, err := parseSize(o.maxRSS)
		if err != nil {
			return fmt.Errorf("-max-rss %q: %v", o.maxRSS, err)
		}
		o.maxRSSBytes = n
	}
	if o.user != "" || o.group != "" {
		cred, err := lookupCredential(o.user, o.group)
		if err != nil {
			return err
		}
		o.cred = cred
	}
	if o.statePath != "" {
		// Stat first: opening a FIFO would block until a writer comes.
		fi, err := os.Stat(o.statePath)
		if err != nil {
			return fmt.Errorf("-state %q: %w", o.statePath, errors.Unwrap(err))
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("-state %q: not a regular file", o.statePath)
		}
		f, err := os.Open(o.statePath)
		if err != nil {
			return fmt.Errorf("-state %q: %w", o.statePath, errors.Unwrap(err))
		}
		f.Close()
	}
	return nil
}

func (o *options) masterConfig(p Program, logger *slog.Logger) (master.Config, error) {
	cfg := master.Config{
		Workers:         o.workers,
		Listen:          o.specs,
		PIDFile:         o.pidfile,
		Control:         o.control,
		Grace:           o.grace,
		UpgradeTimeout:  o.upgradeTimeout,
		Heartbeat:       o.heartbeat,
		StartTimeout:    o.startTimeout,
		ReadyDelay:      o.readyDelay,
		BackoffMin:      o.backoffMin,
		BackoffMax:      o.backoffMax,
		StablePeriod:    o.stable,
		StartAttempts:   startAttempts(o.startAttempts),
		Command:         o.command,
		Credential:      o.cred,
		MaxRSS:          o.maxRSSBytes,
		MaxRequests:     o.maxRequests,
		Canary:          o.canary,
		UpgradeSurge:    o.upgradeSurge,
		Spare:           o.spare,
		RequestTimeout:  o.requestTimeout,
		WorkerOutput:    workerOutput(o.workerOutput, o.logFormat),
		ExternalMetrics: o.externalMetrics,
		Balance:         o.balance,
		Logger:          logger,
		Version:         p.Version,
		LoadState:       p.loadState(o.statePath, logger),
		StateKey:        p.stateKey(o.statePath),
	}
	if o.metrics != "off" {
		cfg.MetricsAddr = o.metrics
	}
	if cfg.Control == "" {
		path, err := master.DefaultControlPath(p.Name)
		if err != nil {
			return cfg, err
		}
		cfg.Control = path
	}
	return cfg, nil
}

// parseSize parses a byte size: a number with an optional unit (B, K/KB/KiB,
// M/MB/MiB, G/GB/GiB; all units are powers of 1024).
func parseSize(v string) (uint64, error) {
	num := strings.TrimRight(v, "BbKkMmGgIi")
	unit := strings.ToLower(strings.TrimPrefix(v, num))
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a size such as 512MiB or 2G")
	}
	mult := map[string]float64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit %q (want B, K, M or G)", unit)
	}
	return uint64(n * mult), nil
}

// lookupCredential resolves -user and -group. Running workers as another
// user needs a root master.
func lookupCredential(name, group string) (*master.Credential, error) {
	cred := &master.Credential{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	if name != "" {
		u, err := user.Lookup(name)
		if err != nil {
			if u, err = user.LookupId(name); err != nil {
				return nil, fmt.Errorf("-user %q: no such user", name)
			}
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred.UID, cred.GID = uint32(uid), uint32(gid)
	}
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			if g, err = user.LookupGroupId(group); err != nil {
				return nil, fmt.Errorf("-group %q: no such group", group)
			}
		}
		gid, _ := strconv.ParseUint(g.Gid, 10, 32)
		cred.GID = uint32(gid)
	}
	if os.Geteuid() != 0 && (cred.UID != uint32(os.Geteuid()) || cred.GID != uint32(os.Getegid())) {
		return nil, fmt.Errorf("-user %q/-group %q: only a master running as root can run workers as another user", name, group)
	}
	return cred, nil
}

// startAttempts maps the flag (0: never give up) to Config.StartAttempts
// (0: the default, negative: never give up).
func startAttempts(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// Parse checks a command line as Run would and returns the master's
// configuration, starting nothing. Deployment files are tested with it:
// what a unit or a manifest passes must be a command line preforkd takes.
func (p Program) Parse(args []string) (master.Config, error) {
	o, err := parseFlags(p, args, io.Discard)
	if err != nil {
		return master.Config{}, err
	}
	cfg, err := o.masterConfig(p, slog.New(slog.DiscardHandler))
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// workerOutput is Config.WorkerOutput for -worker-output and -log-format.
func workerOutput(flag, logFormat string) string {
	if flag == "inherit" {
		return "inherit"
	}
	return logFormat // "text" or "json"
}
