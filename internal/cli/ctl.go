package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/preforkd/preforkd/master"
)

// runCtl is "NAME ctl [-control PATH] status [-json] | reload | restart
// | scale N | stop", the client of the master's control socket; without
// -control it finds the socket where a master of the same name puts it.
func runCtl(name string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("control", "", "control socket path (default: where a master of this name puts it)")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long to wait for reload or restart")
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Errorf("ctl: %v", err)}
	}
	if *path == "" {
		p, err := master.DefaultControlPath(name)
		if err != nil {
			return err
		}
		*path = p
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageError{errors.New("ctl: want status [-json] | top [-json] [-interval D] [-n N] | reload [-canary D] | restart | scale N | stop")}
	}
	c := &ctlClient{path: *path, http: &http.Client{
		Timeout: *timeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", *path)
			if err != nil {
				return nil, err
			}
			if err := checkServer(conn, *path); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		}},
	}}
	switch cmd := rest[0]; cmd {
	case "status":
		return c.status(rest[1:], stdout)
	case "reload":
		return c.reload(rest[1:], stdout)
	case "top":
		return c.top(rest[1:], stdout)
	case "restart", "stop":
		var res ctlResult
		if _, err := c.do("POST", "/"+cmd, &res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", cmd)
		return nil
	case "scale":
		if len(rest) != 2 {
			return usageError{errors.New("ctl scale: want scale N")}
		}
		if _, err := strconv.Atoi(rest[1]); err != nil {
			return usageError{fmt.Errorf("ctl scale %q: not a number", rest[1])}
		}
		var res ctlResult
		if _, err := c.do("POST", "/scale?workers="+url.QueryEscape(rest[1]), &res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "scale: %s workers\n", rest[1])
		return nil
	default:
		return usageError{fmt.Errorf("ctl: unknown command %q (want status, top, reload, restart, scale or stop)", cmd)}
	}
}

// reload is "ctl reload [-canary D]": it waits for the upgrade's outcome.
func (c *ctlClient) reload(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	canary := fs.String("canary", "", "start the new generation with a canary judged for this long (overrides -canary for this upgrade; 0: none)")
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Errorf("ctl reload: %v", err)}
	}
	path := "/reload"
	if *canary != "" {
		if d, err := time.ParseDuration(*canary); err != nil || d < 0 {
			return usageError{fmt.Errorf("ctl reload -canary %q: want a duration such as 30s (0: no canary)", *canary)}
		}
		path += "?canary=" + url.QueryEscape(*canary)
	}
	var res ctlResult
	if _, err := c.do("POST", path, &res); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "reload: ok")
	return nil
}

// status is "ctl status [-json]".
func (c *ctlClient) status(args []string, stdout io.Writer) error {
	sf := flag.NewFlagSet("status", flag.ContinueOnError)
	sf.SetOutput(io.Discard)
	asJSON := sf.Bool("json", false, "print JSON")
	if err := sf.Parse(args); err != nil {
		return usageError{fmt.Errorf("ctl status: %v", err)}
	}
	var st master.Status
	body, err := c.do("GET", "/status", &st)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err = stdout.Write(body)
		return err
	}
	printStatus(stdout, st)
	return nil
}

type ctlResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

type ctlClient struct {
	path string
	http *http.Client
}

// do sends one request; a non-2xx answer is an error carrying the
// master's message.
func (c *ctlClient) do(method, path string, v any) ([]byte, error) {
	req, _ := http.NewRequest(method, "http://preforkd"+path, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("control socket %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", c.path, err)
	}
	if resp.StatusCode/100 != 2 {
		var r ctlResult
		if json.Unmarshal(body, &r) == nil && r.Error != "" {
			return nil, fmt.Errorf("%s %s: %s", method, path, r.Error)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return nil, fmt.Errorf("%s %s: bad answer: %w", method, path, err)
		}
	}
	return body, nil
}

func printStatus(w io.Writer, st master.Status) {
	fmt.Fprintf(w, "master pid %d  generation %d  version %s  uptime %s  workers %d",
		st.PID, st.Generation, st.Version, secs(st.Uptime), st.Desired)
	if st.StatePages != "" {
		fmt.Fprintf(w, "  state pages %s", st.StatePages)
	}
	fmt.Fprintln(w)
	if st.Upgrading {
		fmt.Fprintln(w, "upgrade in progress")
	}
	if st.Phase == "loading" {
		fmt.Fprintln(w, "loading the shared state: no worker yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tPID\tSTATE\tUPTIME\tRESTARTS\tRSS\tPSS\tLAST EXIT")
	for _, s := range st.Slots {
		rss, pss := "-", "-"
		if s.Memory != nil {
			rss, pss = mib(s.Memory.RSS), mib(s.Memory.PSS)
		}
		pid := "-"
		if s.PID > 0 {
			pid = strconv.Itoa(s.PID)
		}
		last := s.LastExit
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.Slot, pid, s.State, secs(s.Uptime), s.Restarts, rss, pss, last)
	}
	for _, d := range st.Draining {
		fmt.Fprintf(tw, "(%d)\t%d\tdraining (%s)\t%s\t\t\t\t\n", d.Slot, d.PID, d.Reason, secs(d.Uptime))
	}
	for _, sp := range st.Spares {
		fmt.Fprintf(tw, "spare\t%d\t%s\t%s\t\t\t\t\n", sp.PID, sp.State, secs(sp.Uptime))
	}
	tw.Flush()
	if st.SparesPromoted > 0 {
		fmt.Fprintf(w, "spares promoted: %d\n", st.SparesPromoted)
	}
}

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

func mib(b uint64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }
