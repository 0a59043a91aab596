package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/preforkd/preforkd/internal/aggregate"
	"github.com/preforkd/preforkd/master"
)

// topFrame is one refresh of `ctl top`, as -json prints it.
type topFrame struct {
	Time       time.Time         `json:"time"`
	PID        int               `json:"pid"`
	Generation int               `json:"generation"`
	Version    string            `json:"version"`
	Uptime     float64           `json:"uptime_seconds"`
	Desired    int               `json:"workers_desired"`
	Upgrading  bool              `json:"upgrading"`
	Upgrades   map[string]uint64 `json:"upgrades"`
	Rollbacks  map[string]uint64 `json:"rollbacks"`
	Slots      []topSlot         `json:"slots"`
}

// topSlot is one slot's line. The rates and the p99 are over the last
// interval (null on the first frame, or without HTTP figures).
type topSlot struct {
	Slot      int      `json:"slot"`
	PID       int      `json:"pid"`
	State     string   `json:"state"`
	Uptime    float64  `json:"uptime_seconds"`
	ReqPerSec *float64 `json:"requests_per_second"`
	InFlight  *float64 `json:"in_flight"`
	P99       *float64 `json:"p99_seconds"`
	RSS       uint64   `json:"rss_bytes"`
	PSS       uint64   `json:"pss_bytes"`
	Restarts  int      `json:"restarts"`
	LastExit  string   `json:"last_exit,omitempty"`
}

// frameOf builds a frame from a status and the previous one (nil at first).
func frameOf(now time.Time, st master.Status, prev *master.Status, dt time.Duration) topFrame {
	f := topFrame{Time: now, PID: st.PID, Generation: st.Generation, Version: st.Version, Uptime: st.Uptime,
		Desired: st.Desired, Upgrading: st.Upgrading, Upgrades: st.Upgrades, Rollbacks: st.Rollbacks, Slots: []topSlot{}}
	before := map[int]*master.SlotHTTP{}
	if prev != nil {
		for _, s := range prev.Slots {
			before[s.Slot] = s.HTTP
		}
	}
	for _, s := range st.Slots {
		row := topSlot{Slot: s.Slot, PID: s.PID, State: s.State, Uptime: s.Uptime, Restarts: s.Restarts, LastExit: s.LastExit}
		if s.Memory != nil {
			row.RSS, row.PSS = s.Memory.RSS, s.Memory.PSS
		}
		if h := s.HTTP; h != nil {
			inflight := h.InFlight
			row.InFlight = &inflight
			if p := before[s.Slot]; p != nil && dt > 0 && h.Requests >= p.Requests {
				rate := (h.Requests - p.Requests) / dt.Seconds()
				row.ReqPerSec = &rate
				if q := aggregate.Quantile(0.99, aggregate.SubBuckets(buckets(h), buckets(p))); !math.IsNaN(q) {
					row.P99 = &q
				}
			}
		}
		f.Slots = append(f.Slots, row)
	}
	return f
}

func buckets(h *master.SlotHTTP) []aggregate.Bucket {
	out := make([]aggregate.Bucket, 0, len(h.Duration))
	for _, b := range h.Duration {
		le, err := strconv.ParseFloat(b.LE, 64) // "+Inf" parses
		if err == nil {
			out = append(out, aggregate.Bucket{UpperBound: aggregate.Float(le), Count: b.Count})
		}
	}
	return out
}

// lines renders a frame as the screen's text.
func (f topFrame) lines() []string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "master pid %d  generation %d  version %s  uptime %s  workers %d  upgrades %d ok, %d failed, %d rolled back",
		f.PID, f.Generation, f.Version, secs(f.Uptime), f.Desired, f.Upgrades["success"], f.Upgrades["failed"], f.Upgrades["rolled_back"])
	if f.Upgrading {
		b.WriteString("  (upgrading)")
	}
	b.WriteString("\n\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tPID\tSTATE\tUPTIME\tREQ/S\tIN FLIGHT\tP99\tRSS\tPSS\tRESTARTS\tLAST EXIT")
	for _, s := range f.Slots {
		pid, rss, pss, last := "-", "-", "-", s.LastExit
		if s.PID > 0 {
			pid = strconv.Itoa(s.PID)
		}
		if s.RSS > 0 {
			rss, pss = mib(s.RSS), mib(s.PSS)
		}
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Slot, pid, s.State, secs(s.Uptime),
			num(s.ReqPerSec, "%.0f"), num(s.InFlight, "%.0f"), p99(s.P99), rss, pss, s.Restarts, last)
	}
	tw.Flush()
	b.WriteString("\nq: quit")
	return strings.Split(b.String(), "\n")
}

func num(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

func p99(v *float64) string {
	if v == nil {
		return "-"
	}
	return time.Duration(*v * float64(time.Second)).Round(10 * time.Microsecond).String()
}

// top is "ctl top [-interval D] [-json] [-n N]".
func (c *ctlClient) top(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	interval := fs.Duration("interval", time.Second, "refresh interval")
	asJSON := fs.Bool("json", false, "print one JSON object per interval instead of drawing the screen")
	count := fs.Int("n", 0, "stop after N refreshes (0: until q, ^C or the master's end)")
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Errorf("ctl top: %v", err)}
	}
	if *interval < 100*time.Millisecond {
		return usageError{fmt.Errorf("ctl top -interval %v: want at least 100ms", *interval)}
	}
	var prev *master.Status
	var prevAt time.Time
	next := func() (topFrame, error) {
		var st master.Status
		if _, err := c.do("GET", "/status?http=1", &st); err != nil {
			return topFrame{}, err
		}
		now := time.Now()
		f := frameOf(now, st, prev, now.Sub(prevAt))
		prev, prevAt = &st, now
		return f, nil
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for i := 0; *count == 0 || i < *count; i++ {
			if i > 0 {
				time.Sleep(*interval)
			}
			f, err := next()
			if err != nil {
				return err
			}
			if err := enc.Encode(f); err != nil {
				return err
			}
		}
		return nil
	}
	return topScreen(next, *interval, *count)
}

// topScreen draws frames on the terminal until q, Esc or ^C (or count
// refreshes), and restores the terminal.
func topScreen(next func() (topFrame, error), interval time.Duration, count int) error {
	scr, err := tcell.NewScreen()
	if err == nil {
		err = scr.Init()
	}
	if err != nil {
		return fmt.Errorf("ctl top needs a terminal (ctl top -json does not): %w", err)
	}
	defer scr.Fini()
	evs := make(chan tcell.Event, 16)
	quit := make(chan struct{})
	go scr.ChannelEvents(evs, quit)
	defer close(quit)
	draw := func() {
		f, err := next()
		lines := f.lines()
		if err != nil {
			lines = []string{"ctl top: " + err.Error(), "", "q: quit"}
		}
		scr.Clear()
		for y, line := range lines {
			x := 0
			for _, r := range line {
				scr.SetContent(x, y, r, nil, tcell.StyleDefault)
				x++
			}
		}
		scr.Show()
	}
	draw()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 1; count == 0 || n < count; {
		select {
		case ev, ok := <-evs:
			if !ok {
				return errors.New("ctl top: the terminal went away")
			}
			switch ev := ev.(type) {
			case *tcell.EventKey:
				if ev.Key() == tcell.KeyCtrlC || ev.Key() == tcell.KeyEscape || ev.Rune() == 'q' {
					return nil
				}
			case *tcell.EventResize:
				scr.Sync()
			}
		case <-tick.C:
			draw()
			n++
		}
	}
	return nil
}
