package prometheus

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

func promtool(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (.ci/run does)")
	}
	out, err := exec.Command("promtool", args...).CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// The rules pass promtool's checks and their unit tests (every alert on
// synthetic series, firing and not firing), and the scrape config is valid.
func TestPromtool(t *testing.T) {
	promtool(t, "check", "rules", "rules.yml")
	promtool(t, "test", "rules", "rules_test.yml")
	promtool(t, "check", "config", "prometheus.yml")
}

// grafanaVars are the dashboard's variables, replaced by values that
// Prometheus itself would accept.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "${instance}", ".+", "$instance", ".+")

// dashboardExprs are the PromQL expressions of every panel, and the
// metrics its variables query (label_values(METRIC, label)).
func dashboardExprs(t *testing.T) (exprs []string, varMetrics []string) {
	t.Helper()
	b, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	lv := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*),`)
	for _, v := range d.Templating.List {
		if v.Definition == "" {
			continue
		}
		m := lv.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable query %q: want label_values(METRIC, label)", v.Definition)
			continue
		}
		varMetrics = append(varMetrics, m[1])
	}
	return exprs, varMetrics
}

// ruleExprs are the rules' expressions and the names they record.
func ruleExprs(t *testing.T) (exprs []string, recorded []string) {
	t.Helper()
	b, err := os.ReadFile("rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Record string `json:"record"`
				Expr   string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			if r.Record != "" {
				recorded = append(recorded, r.Record)
			}
		}
	}
	return exprs, recorded
}

// selectedMetrics parses expr with the Prometheus parser and returns the
// metric names it selects.
func selectedMetrics(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names, nil
}

// Every expression of the dashboard and the rules parses, and names only
// metrics that preforkd exports (seen in a real scrape of the demo, with
// -max-rss set and some requests served) or that the rules record.
func TestDashboardAndRulesNameExportedMetrics(t *testing.T) {
	exported := scrape(t)
	dash, varMetrics := dashboardExprs(t)
	rules, recorded := ruleExprs(t)
	known := func(name string) bool { return exported[name] || slices.Contains(recorded, name) }
	for _, name := range varMetrics {
		if !known(name) {
			t.Errorf("a dashboard variable queries %s, which preforkd does not export", name)
		}
	}
	for what, exprs := range map[string][]string{"dashboard.json": dash, "rules.yml": rules} {
		for _, expr := range exprs {
			names, err := selectedMetrics(expr)
			if err != nil {
				t.Errorf("%s: %q does not parse: %v", what, expr, err)
				continue
			}
			if len(names) == 0 {
				t.Errorf("%s: %q selects no metric", what, expr)
			}
			for _, n := range names {
				if !known(n) {
					t.Errorf("%s: %q names %s, which preforkd does not export", what, expr, n)
				}
			}
		}
	}
	if _, err := selectedMetrics(`sum(rate(http_requests_total[5m]`); err == nil {
		t.Error("the parser accepted a broken expression: the check above proves nothing")
	}
}

// scrape runs the demo and returns the metric names of one scrape (for a
// histogram, its _bucket, _sum and _count series).
func scrape(t *testing.T) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	exe := filepath.Join(dir, "preforkd")
	if out, err := exec.Command("go", "build", "-C", "../..", "-o", exe, "./cmd/preforkd").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	port, metrics := testutil.FreePort(t), testutil.FreePort(t)
	cmd := exec.Command(exe, "-workers=2", fmt.Sprintf("-listen=http=tcp://127.0.0.1:%d", port),
		fmt.Sprintf("-metrics=127.0.0.1:%d", metrics), "-control="+filepath.Join(dir, "ctl.sock"), "-max-rss=1GiB")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var log testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	c := &http.Client{Timeout: 5 * time.Second}
	base := fmt.Sprintf("http://127.0.0.1:%d", metrics)
	testutil.WaitFor(t, 30*time.Second, "preforkd ready", func() bool {
		resp, err := c.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	for i := 0; i < 20; i++ {
		if resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
			resp.Body.Close()
		}
	}
	// A worker's death, so that the restart counter has a series.
	if kids := testutil.Children(cmd.Process.Pid); len(kids) > 0 {
		syscall.Kill(kids[0], syscall.SIGKILL)
	}
	var fams map[string]*dto.MetricFamily
	testutil.WaitFor(t, 30*time.Second, "a scrape with the restart counter", func() bool {
		resp, err := c.Get(base + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		if fams, err = p.TextToMetricFamilies(resp.Body); err != nil {
			t.Fatalf("scrape: %v", err)
		}
		return fams["prefork_worker_restarts_total"] != nil
	})
	names := map[string]bool{}
	for name, f := range fams {
		names[name] = true
		if f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[name+s] = true
			}
		}
	}
	return names
}
