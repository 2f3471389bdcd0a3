package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cowbird-go/cowbird/geoserver/geoservertest"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// The bird-house monitoring files of the component (config/monitoring/):
// the Prometheus scrape job, the alert rules and the Grafana dashboard,
// checked against the metrics a running daemon exports and against the way
// birdhouse-deploy's monitoring component provisions its own.

// monitoringDir holds the component's monitoring files.
var monitoringDir = filepath.Join(componentDir, "config", "monitoring")

// Facts of birdhouse-deploy's components/monitoring (checked against 2.28.0
// and its current master).
const (
	// grafana_datasources.yml.template: the one Prometheus datasource, by
	// the name its dashboard's panels use.
	grafanaDatasource = "Prometheus"
	// default.env: GRAFANA_VERSION 7.0.3, whose dashboard schema is 25 (as
	// in its docker-and-system-monitoring dashboard). Grafana migrates older
	// schemas up, never newer ones down.
	grafanaMaxSchema = 25
	// docker-compose-extra.yml: grafana_dashboards/ is bind-mounted read-only
	// there, so docker cannot create a mount point inside it.
	grafanaDashboardsMount = "/etc/grafana/dashboards"
	// docker-compose-extra.yml: the directory of the provider files, where
	// the component mounts its grafana_dashboards.yml.
	grafanaProviders    = "/etc/grafana/provisioning/dashboards"
	grafanaOwnProvider  = grafanaProviders + "/grafana_dashboards.yml"
	grafanaOwnProviderN = "default"
	// prometheus.yml.template: scrape_config_files and rule_files, and the
	// component's own rules file, which a mount of ours must not shadow.
	prometheusScrapeFiles = "/etc/prometheus/scrape_config.d/*.yml"
	prometheusRuleFiles   = "/etc/prometheus/*.rules"
	prometheusOwnRules    = "/etc/prometheus/prometheus.rules"
)

// grafana70Panels are the panel types Grafana 7.0 ships (no "timeseries",
// which came with 7.4).
var grafana70Panels = []string{"graph", "stat", "gauge", "bargauge", "table", "text", "row",
	"singlestat", "heatmap", "alertlist", "dashlist", "news", "pluginlist", "logs"}

// --- What the daemon exports --------------------------------------------

// exported is the set of series names a scrape of the daemon gives
// Prometheus, each with its label names.
type exported map[string]map[string]bool

// Labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance"}

// parseExposition reads the Prometheus text format: the series names come
// from the # TYPE lines (a histogram is NAME_bucket, NAME_sum and
// NAME_count; a summary NAME, NAME_sum and NAME_count) and their label
// names from the samples.
func parseExposition(text string) (exported, error) {
	out := exported{}
	add := func(name string) {
		if out[name] == nil {
			out[name] = map[string]bool{}
			for _, l := range targetLabels {
				out[name][l] = true
			}
		}
	}
	sample := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? \S+( \S+)?$`)
	labelName := regexp.MustCompile(`(?:^|,)\s*([a-zA-Z_][a-zA-Z0-9_]*)="`)
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			switch name := f[2]; f[3] {
			case "histogram":
				add(name + "_bucket")
				out[name+"_bucket"]["le"] = true
				add(name + "_sum")
				add(name + "_count")
			case "summary":
				add(name)
				out[name]["quantile"] = true
				add(name + "_sum")
				add(name + "_count")
			case "counter", "gauge", "untyped":
				add(name)
			default:
				return nil, fmt.Errorf("metric %s: type %q", name, f[3])
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sample.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("not a sample line: %q", line)
		}
		if out[m[1]] == nil {
			return nil, fmt.Errorf("sample %s has no # TYPE line", m[1])
		}
		for _, l := range labelName.FindAllStringSubmatch(m[3], -1) {
			out[m[1]][l[1]] = true
		}
	}
	return out, sc.Err()
}

// withPrometheusSeries adds the series Prometheus itself writes for every
// scrape target that the dashboard and the rules use.
func (e exported) withPrometheusSeries() exported {
	out := maps.Clone(e)
	out["up"] = map[string]bool{"job": true, "instance": true}
	return out
}

// liveMetrics runs the binary with the FileSystem, Magpie and Geoserver
// handlers against the Magpie and GeoServer emulators, makes it do some of
// everything it counts (a reconcile, webhooks accepted and rejected, calls
// to Magpie and GeoServer, a file event) and returns what /metrics gives.
func liveMetrics(t *testing.T) exported {
	t.Helper()
	bin := builtBinary(t)
	dir := t.TempDir()

	mag := magpietest.New(magpietest.Options{QuietSeeding: true})
	if err := mag.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mag.Close() })
	alice, err := mag.AddUser("alice", "qwertyqwerty", "users")
	if err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(dir, "user_workspaces")
	gs := geoservertest.NewServer(t, geoservertest.Options{PathMap: map[string]string{"/user_workspaces": ws}})
	for _, d := range []string{ws, filepath.Join(dir, "jupyterhub_user_data", "alice")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	wps := filepath.Join(dir, "wpsoutputs")
	for _, f := range []string{"hummingbird/2f6e/report.txt", fmt.Sprintf("finch/users/%d/9c1a/tasmax.nc", alice)} {
		p := filepath.Join(wps, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, p, "a WPS output\n")
	}
	cfg := filepath.Join(dir, "config.yml")
	writeFile(t, cfg, fmt.Sprintf(`handlers:
  Magpie:
    active: true
    url: %[2]s
    admin_user: admin
    admin_password: qwertyqwerty
  Geoserver:
    active: true
    url: %[3]s
    workspace_dir: %[1]s/user_workspaces
    admin_user: %[4]s
    admin_password: %[5]s
  FileSystem:
    active: true
    priority: 1
    workspace_dir: %[1]s/user_workspaces
    jupyterhub_user_data_dir: %[1]s/jupyterhub_user_data
    wps_outputs_dir: %[1]s/wpsoutputs
sync_permissions: {}
`, dir, mag.URL(), gs.URL(), geoservertest.DefaultUser, geoservertest.DefaultPassword))

	d := startDaemon(t, bin, cfg, filepath.Join(dir, "state"))
	base := "http://" + d.addr
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(hangGuard)
		for !cond() {
			if time.Now().After(deadline) {
				_ = d.cmd.Process.Kill()
				t.Fatalf("timed out waiting for %s\n%s", what, d.log())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	status := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor("/readyz", func() bool { return status(base+"/readyz") == http.StatusOK })

	post := func(body string, want int) {
		t.Helper()
		resp, err := http.Post(base+"/webhooks/users", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST /webhooks/users %s: status %d, want %d", body, resp.StatusCode, want)
		}
	}
	post(`{"event": "created", "user_name": "alice", "callback_url": ""}`, http.StatusOK)
	post(`{"event": "renamed", "user_name": "alice"}`, http.StatusBadRequest)
	writeFile(t, filepath.Join(wps, "hummingbird", "2f6e", "later.txt"), "a new WPS output\n")

	// Labelled series exist once counted: wait for one of each kind.
	var text string
	want := []string{
		`cowbird_handler_calls_total{`, `cowbird_events_received_total{`, `cowbird_events_rejected_total{`,
		`cowbird_reconcile_runs_total{`, `cowbird_handler_ready{`, `service="magpie"`, `service="geoserver"`,
	}
	waitFor("every kind of series in /metrics", func() bool {
		text = get(t, base+"/metrics")
		return !slices.ContainsFunc(want, func(s string) bool { return !strings.Contains(text, s) })
	})
	m, err := parseExposition(text)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	if code := d.stop(t); code != 0 {
		t.Errorf("serve exit code after SIGTERM: %d\n%s", code, d.log())
	}
	return m
}

// --- PromQL names ---------------------------------------------------------

// PromQL's functions and aggregation operators (Prometheus 2.x).
var (
	promqlFunctions = strings.Fields(`abs absent absent_over_time avg_over_time ceil changes clamp clamp_max
		clamp_min count_over_time day_of_month day_of_week day_of_year days_in_month delta deriv exp floor
		histogram_quantile holt_winters hour idelta increase irate label_join label_replace last_over_time ln
		log10 log2 max_over_time min_over_time minute month predict_linear present_over_time quantile_over_time
		rate resets round scalar sgn sort sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time time
		timestamp vector year acos acosh asin asinh atan atanh cos cosh deg pi rad sin sinh tan tanh`)
	promqlAggregations     = strings.Fields(`sum avg min max count stddev stdvar topk bottomk quantile count_values group`)
	promqlGroupingKeywords = strings.Fields(`by without on ignoring group_left group_right`)
	promqlKeywords         = strings.Fields(`and or unless bool offset atan2 inf nan`)
)

// promqlUse is what an expression names.
type promqlUse struct {
	metrics  []string            // series names, in order, repeated
	matchers map[string][]string // "metric/label" -> the values it is matched against
	grouping []promqlGrouping
}

// promqlGrouping is a label list: by (a, b), on (a), ...
type promqlGrouping struct {
	keyword string // by, without, on, ignoring, group_left or group_right
	labels  []string
}

type promqlToken struct {
	kind byte // 'i' identifier, 's' string, 'n' number or duration, 'p' punctuation or operator
	text string
}

func lexPromQL(expr string) ([]promqlToken, error) {
	var toks []promqlToken
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for ; j < len(expr) && expr[j] != c; j++ {
				if expr[j] == '\\' && c != '`' {
					j++
				}
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			toks = append(toks, promqlToken{'s', expr[i+1 : j]})
			i = j + 1
		case isDigit(c) || c == '.' && i+1 < len(expr) && isDigit(expr[i+1]):
			j := i
			for j < len(expr) && (isDigit(expr[j]) || isIdentStart(expr[j]) || expr[j] == '.') {
				j++
			}
			toks = append(toks, promqlToken{'n', expr[i:j]})
			i = j
		case isIdentStart(c):
			j := i
			for j < len(expr) && (isIdentStart(expr[j]) || isDigit(expr[j])) {
				j++
			}
			toks = append(toks, promqlToken{'i', expr[i:j]})
			i = j
		case strings.ContainsRune("(){}[],", rune(c)):
			toks = append(toks, promqlToken{'p', string(c)})
			i++
		case strings.ContainsRune("+-*/%^=!<>~@", rune(c)):
			j := i + 1 // ==, !=, <=, >=, =~, !~
			if j < len(expr) && strings.ContainsRune("=!<>", rune(c)) && strings.ContainsRune("=~", rune(expr[j])) {
				j++
			}
			toks = append(toks, promqlToken{'p', expr[i:j]})
			i = j
		default:
			return nil, fmt.Errorf("unexpected %q at %d", c, i)
		}
	}
	return toks, nil
}

// scanPromQL lists the series names, label matchers and grouping labels of
// expr. It is no full parser: it knows PromQL's tokens, functions and
// keywords well enough that every other identifier outside braces, label
// lists and strings is a series name.
func scanPromQL(expr string) (promqlUse, error) {
	u := promqlUse{matchers: map[string][]string{}}
	toks, err := lexPromQL(expr)
	if err != nil {
		return u, err
	}
	var stack []string
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		next := func() promqlToken {
			if i+1 < len(toks) {
				return toks[i+1]
			}
			return promqlToken{}
		}
		switch {
		case tk.kind == 'p' && (tk.text == "(" || tk.text == "["):
			stack = append(stack, tk.text)
		case tk.kind == 'p' && (tk.text == ")" || tk.text == "]"):
			want := map[string]string{")": "(", "]": "["}[tk.text]
			if len(stack) == 0 || stack[len(stack)-1] != want {
				return u, fmt.Errorf("unbalanced %q", tk.text)
			}
			stack = stack[:len(stack)-1]
		case tk.kind == 'p' && tk.text == "{":
			return u, fmt.Errorf("a selector without a metric name ({...}): name the metric")
		case tk.kind == 'p' && tk.text == "}":
			return u, fmt.Errorf("unbalanced %q", tk.text)
		case tk.kind == 'i' && slices.Contains(promqlGroupingKeywords, strings.ToLower(tk.text)):
			kw := strings.ToLower(tk.text)
			if next().text != "(" {
				if kw == "group_left" || kw == "group_right" {
					continue
				}
				return u, fmt.Errorf("%s without a label list", tk.text)
			}
			var labels []string
			for i += 2; i < len(toks) && toks[i].text != ")"; i++ {
				if toks[i].kind == 'i' {
					labels = append(labels, toks[i].text)
				} else if toks[i].text != "," {
					return u, fmt.Errorf("%s (...): unexpected %q", tk.text, toks[i].text)
				}
			}
			if i == len(toks) {
				return u, fmt.Errorf("%s (...): no closing parenthesis", tk.text)
			}
			u.grouping = append(u.grouping, promqlGrouping{kw, labels})
		case tk.kind == 'i' && (slices.Contains(promqlFunctions, tk.text) || slices.Contains(promqlAggregations, tk.text)):
			if n := next(); n.text != "(" && !slices.Contains(promqlGroupingKeywords, strings.ToLower(n.text)) {
				return u, fmt.Errorf("%s is a function: it needs (...)", tk.text)
			}
		case tk.kind == 'i' && slices.Contains(promqlKeywords, strings.ToLower(tk.text)):
		case tk.kind == 'i':
			if next().text == "(" {
				return u, fmt.Errorf("%s(...): not a PromQL function", tk.text)
			}
			name := tk.text
			u.metrics = append(u.metrics, name)
			if next().text != "{" {
				continue
			}
			for i += 2; i < len(toks) && toks[i].text != "}"; i++ {
				if toks[i].text == "," {
					continue
				}
				if i+2 >= len(toks) || toks[i].kind != 'i' || toks[i+1].kind != 'p' || toks[i+2].kind != 's' {
					return u, fmt.Errorf("%s{...}: a matcher is not LABEL OP \"VALUE\"", name)
				}
				if op := toks[i+1].text; !slices.Contains([]string{"=", "!=", "=~", "!~"}, op) {
					return u, fmt.Errorf("%s{...}: matcher operator %q", name, op)
				}
				if toks[i+1].text == "=~" || toks[i+1].text == "!~" {
					if _, err := regexp.Compile("^(?:" + toks[i+2].text + ")$"); err != nil {
						return u, fmt.Errorf("%s{...}: %v", name, err)
					}
				}
				key := name + "/" + toks[i].text
				u.matchers[key] = append(u.matchers[key], toks[i+2].text)
				i += 2
			}
			if i == len(toks) {
				return u, fmt.Errorf("%s{...}: no closing brace", name)
			}
		}
	}
	if len(stack) > 0 {
		return u, fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return u, nil
}

// checkPromQL returns what is wrong with expr given the series a scrape of
// the daemon gives: unknown series (a histogram's own name is none),
// matchers and grouping labels the series do not have, a job other than
// the scrape job.
func checkPromQL(expr string, have exported, job string) (promqlUse, []string) {
	u, err := scanPromQL(expr)
	if err != nil {
		return u, []string{err.Error()}
	}
	var problems []string
	if len(u.metrics) == 0 {
		problems = append(problems, "names no metric")
	}
	all := map[string]bool{}
	for _, m := range u.metrics {
		labels, ok := have[m]
		if !ok {
			problems = append(problems, "metric "+m+" is not exported by the daemon")
			continue
		}
		for l := range labels {
			all[l] = true
		}
	}
	for _, key := range slices.Sorted(maps.Keys(u.matchers)) {
		m, l, _ := strings.Cut(key, "/")
		if labels, ok := have[m]; ok && !labels[l] {
			problems = append(problems, fmt.Sprintf("%s has no label %s", m, l))
		}
		if l == "job" {
			for _, v := range u.matchers[key] {
				if v != job {
					problems = append(problems, fmt.Sprintf(`%s{job=%q}: the scrape job is %q`, m, v, job))
				}
			}
		}
	}
	for _, g := range u.grouping {
		for _, l := range g.labels {
			if !all[l] {
				problems = append(problems, fmt.Sprintf("grouping label %s is on none of the metrics %v", l, u.metrics))
			}
		}
	}
	return u, problems
}

// TestPromQLChecker checks the checker on expressions it must refuse, so
// that a dashboard or rule naming a metric the daemon lacks fails.
func TestPromQLChecker(t *testing.T) {
	have, err := parseExposition(`# HELP cowbird_handler_calls_total Handler calls.
# TYPE cowbird_handler_calls_total counter
cowbird_handler_calls_total{event="user_created",handler="Geoserver",outcome="ok"} 1
# TYPE cowbird_dispatch_duration_seconds histogram
cowbird_dispatch_duration_seconds_bucket{handler="Geoserver",le="+Inf"} 1
cowbird_dispatch_duration_seconds_sum{handler="Geoserver"} 0.002
cowbird_dispatch_duration_seconds_count{handler="Geoserver"} 1
# TYPE cowbird_inotify_watches gauge
cowbird_inotify_watches 14
`)
	if err != nil {
		t.Fatal(err)
	}
	have = have.withPrometheusSeries()
	good := []string{
		`histogram_quantile(0.95, sum by (le, handler) (rate(cowbird_dispatch_duration_seconds_bucket[5m])))`,
		`sum by (instance, handler, event) (increase(cowbird_handler_calls_total{outcome="error"}[15m])) > 0
		 or sum by (instance, handler, event) (cowbird_handler_calls_total{outcome="error"} unless cowbird_handler_calls_total{outcome="error"} offset 15m)`,
		`rate(cowbird_dispatch_duration_seconds_sum[5m]) / rate(cowbird_dispatch_duration_seconds_count[5m])`,
		`up{job="cowbird"} == 0`,
		`cowbird_inotify_watches > 1e3 and deriv(cowbird_inotify_watches[10m:1m]) > 0.5`,
		`sum(increase(cowbird_handler_calls_total{outcome=~"err.*"}[1h])) or vector(0)`,
	}
	for _, e := range good {
		if u, p := checkPromQL(e, have, "cowbird"); len(p) > 0 || len(u.metrics) == 0 {
			t.Errorf("%s: %v (metrics %v)", e, p, u.metrics)
		}
	}
	bad := map[string]string{
		`rate(cowbird_handler_call_total[5m])`:                                     "cowbird_handler_call_total is not exported",
		`histogram_quantile(0.9, rate(cowbird_dispatch_duration_seconds[5m]))`:     "cowbird_dispatch_duration_seconds is not exported",
		`cowbird_inotify_watch_limit`:                                              "cowbird_inotify_watch_limit is not exported",
		`cowbird_inotify_watches / on (instance) cowbird_inotify_max_user_watches`: "cowbird_inotify_max_user_watches is not exported",
		`rate(cowbird_handler_calls_total{outcom="error"}[5m])`:                    "has no label outcom",
		`sum by (service) (rate(cowbird_handler_calls_total[5m]))`:                 "grouping label service",
		`rat(cowbird_handler_calls_total[5m])`:                                     "not a PromQL function",
		`rate(cowbird_handler_calls_total[5m]`:                                     "unclosed",
		`{__name__="cowbird_handler_calls_total"}`:                                 "without a metric name",
		`up{job="prometheus"}`:                                                     "the scrape job is",
		`rate(cowbird_handler_calls_total{outcome=~"(err"}[5m])`:                   "missing closing",
		`vector(1)`: "names no metric",
	}
	for e, want := range bad {
		_, p := checkPromQL(e, have, "cowbird")
		if !slices.ContainsFunc(p, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("%s: problems %q, want one with %q", e, p, want)
		}
	}
}

// --- The files --------------------------------------------------------------

// grafanaPanel is the part of a Grafana 7 panel the checks read.
type grafanaPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // of a collapsed row
}

type grafanaDashboard struct {
	ID            json.RawMessage `json:"id"`
	UID           string          `json:"uid"`
	Title         string          `json:"title"`
	SchemaVersion int             `json:"schemaVersion"`
	Panels        []grafanaPanel  `json:"panels"`
}

func loadDashboards(t *testing.T, dir string) map[string]grafanaDashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboard in %s (%v)", dir, err)
	}
	out := map[string]grafanaDashboard{}
	uids := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d grafanaDashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if prev, dup := uids[d.UID]; dup || d.UID == "" {
			t.Errorf("%s: uid %q empty or also in %s", f, d.UID, prev)
		}
		uids[d.UID] = f
		out[filepath.Base(f)] = d
	}
	return out
}

// ruleFile is Prometheus's rule file format, strictly: an unknown key fails.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Limit    int    `yaml:"limit"`
		Rules    []struct {
			Alert         string            `yaml:"alert"`
			Record        string            `yaml:"record"`
			Expr          string            `yaml:"expr"`
			For           *string           `yaml:"for"`
			KeepFiringFor string            `yaml:"keep_firing_for"`
			Labels        map[string]string `yaml:"labels"`
			Annotations   map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T, file string) ruleFile {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var rf ruleFile
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(rf.Groups) == 0 {
		t.Fatalf("%s: no groups", file)
	}
	return rf
}

// scrapeJob is the job name of the component's scrape config.
func scrapeJob(t *testing.T) string {
	t.Helper()
	var sc struct {
		ScrapeConfigs []struct {
			JobName       string                       `yaml:"job_name"`
			MetricsPath   string                       `yaml:"metrics_path"`
			StaticConfigs []struct{ Targets []string } `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(monitoringDir, "scrape_configs.yml"), &sc)
	if len(sc.ScrapeConfigs) != 1 || sc.ScrapeConfigs[0].JobName == "" || sc.ScrapeConfigs[0].MetricsPath != "/metrics" {
		t.Fatalf("scrape_configs.yml: want one job of /metrics, got %+v", sc.ScrapeConfigs)
	}
	sc0 := sc.ScrapeConfigs[0]
	if len(sc0.StaticConfigs) != 1 || !slices.Equal(sc0.StaticConfigs[0].Targets, []string{"cowbird:7000"}) {
		t.Errorf("scrape_configs.yml: targets %+v, want cowbird:7000 (the service and port)", sc0.StaticConfigs)
	}
	return sc0.JobName
}

var promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

// Stand-ins for the functions Prometheus gives alert templates.
var alertTemplateFuncs = template.FuncMap{}

func init() {
	for _, f := range strings.Fields(`humanize humanize1024 humanizeDuration humanizePercentage humanizeTimestamp
		title toUpper toLower stripPort stripDomain first label value strvalue safeHtml pathPrefix externalURL
		parseDuration toTime`) {
		alertTemplateFuncs[f] = func(v ...any) string { return fmt.Sprint(v...) }
	}
	alertTemplateFuncs["query"] = func(string) ([]any, error) {
		return nil, fmt.Errorf("query() in an annotation: its metrics are not checked")
	}
	alertTemplateFuncs["reReplaceAll"] = func(p, r, s string) string { return regexp.MustCompile(p).ReplaceAllString(s, r) }
	alertTemplateFuncs["match"] = regexp.MatchString
}

// The template prefix Prometheus puts before annotations.
const alertTemplatePrefix = `{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}`

var labelRef = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

// TestBirdhouseMonitoring checks every query of the dashboard and every
// alert rule against the metrics of a running daemon.
func TestBirdhouseMonitoring(t *testing.T) {
	job := scrapeJob(t)
	have := liveMetrics(t).withPrometheusSeries()
	t.Logf("the daemon exports %d series names", len(have))
	check := func(t *testing.T, where, expr string) promqlUse {
		t.Helper()
		u, problems := checkPromQL(expr, have, job)
		for _, p := range problems {
			t.Errorf("%s: %s\n  expr: %s", where, p, expr)
		}
		return u
	}

	t.Run("dashboard", func(t *testing.T) {
		named := map[string]bool{}
		for file, d := range loadDashboards(t, filepath.Join(monitoringDir, "grafana_dashboards")) {
			if string(d.ID) != "null" {
				t.Errorf("%s: id %s, want null (Grafana assigns it)", file, d.ID)
			}
			if d.Title == "" || d.SchemaVersion == 0 || d.SchemaVersion > grafanaMaxSchema {
				t.Errorf("%s: title %q, schemaVersion %d (Grafana 7.0 reads up to %d)", file, d.Title, d.SchemaVersion, grafanaMaxSchema)
			}
			ids := map[int]bool{}
			var walk func(ps []grafanaPanel, top bool)
			var placed []grafanaPanel
			walk = func(ps []grafanaPanel, top bool) {
				for _, p := range ps {
					where := fmt.Sprintf("%s: panel %d %q", file, p.ID, p.Title)
					if ids[p.ID] || p.ID == 0 {
						t.Errorf("%s: id missing or repeated", where)
					}
					ids[p.ID] = true
					if !slices.Contains(grafana70Panels, p.Type) {
						t.Errorf("%s: type %q is not a Grafana 7.0 panel", where, p.Type)
					}
					g := p.GridPos
					if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
						t.Errorf("%s: gridPos %+v outside the 24 columns", where, g)
					}
					if top {
						for _, q := range placed {
							r := q.GridPos
							if g.X < r.X+r.W && r.X < g.X+g.W && g.Y < r.Y+r.H && r.Y < g.Y+g.H {
								t.Errorf("%s overlaps panel %d %q", where, q.ID, q.Title)
							}
						}
						placed = append(placed, p)
					}
					if p.Type == "row" {
						walk(p.Panels, false)
						continue
					}
					if p.Title == "" {
						t.Errorf("%s: no title", where)
					}
					if ds := string(p.Datasource); ds != fmt.Sprintf("%q", grafanaDatasource) {
						t.Errorf("%s: datasource %s, want %q (the monitoring component's datasource)", where, ds, grafanaDatasource)
					}
					if len(p.Targets) == 0 && p.Type != "text" {
						t.Errorf("%s: no query", where)
					}
					refs := map[string]bool{}
					for _, q := range p.Targets {
						if refs[q.RefID] || q.RefID == "" {
							t.Errorf("%s: refId %q missing or repeated", where, q.RefID)
						}
						refs[q.RefID] = true
						for _, m := range check(t, where+" "+q.RefID, q.Expr).metrics {
							named[m] = true
						}
					}
				}
			}
			walk(d.Panels, true)
		}
		// What the dashboard is for (issue 18): every one of these is shown.
		for _, m := range []string{
			"cowbird_events_received_total", "cowbird_events_rejected_total", "cowbird_monitor_events_total",
			"cowbird_handler_calls_total", "cowbird_dispatch_duration_seconds_bucket",
			"cowbird_journal_pending_events",
			"cowbird_reconcile_duration_seconds_bucket", "cowbird_reconcile_runs_total", "cowbird_reconcile_changes_total",
			"cowbird_monitor_handler_errors_total", "cowbird_monitor_dropped_events_total", "cowbird_monitor_pending_events",
			"cowbird_inotify_watches", "cowbird_inotify_overflows_total", "cowbird_inotify_watch_limit_errors_total",
			"cowbird_outbound_requests_total", "cowbird_outbound_request_duration_seconds_bucket",
			"cowbird_geoserver_jobs_pending", "cowbird_geoserver_jobs_failed_total",
			"cowbird_handler_ready", "up",
		} {
			if !named[m] {
				t.Errorf("no dashboard panel shows %s", m)
			}
		}
		var unshown []string
		for m := range have {
			if strings.HasPrefix(m, "cowbird_") && !named[m] {
				unshown = append(unshown, m)
			}
		}
		slices.Sort(unshown)
		t.Logf("exported but not on the dashboard: %v", unshown)
	})

	t.Run("rules", func(t *testing.T) {
		file := filepath.Join(monitoringDir, "prometheus.rules")
		rf := loadRules(t, file)
		groups, alerts := map[string]bool{}, map[string]bool{}
		for _, g := range rf.Groups {
			if g.Name == "" || groups[g.Name] || len(g.Rules) == 0 {
				t.Errorf("group %q: no name, a repeated name or no rules", g.Name)
			}
			groups[g.Name] = true
			for _, r := range g.Rules {
				where := fmt.Sprintf("%s: group %s: alert %s", filepath.Base(file), g.Name, r.Alert)
				if r.Record != "" || !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(r.Alert) {
					t.Errorf("%s: want an alerting rule with a valid name (record %q)", where, r.Record)
				}
				if alerts[r.Alert] {
					t.Errorf("%s: repeated", where)
				}
				alerts[r.Alert] = true
				if r.For == nil || !promDuration.MatchString(*r.For) {
					t.Errorf("%s: for: %v, want a duration (the monitoring component's rules all have one)", where, r.For)
				}
				if s := r.Labels["severity"]; s != "warning" && s != "critical" {
					t.Errorf("%s: labels.severity %q, want warning or critical (Alertmanager's inhibition reads it)", where, s)
				}
				u := check(t, where, r.Expr)
				// The labels the alert can have: those of its metrics,
				// less what an aggregation drops.
				hasLabel := func(l string) bool {
					ok := slices.ContainsFunc(u.metrics, func(m string) bool { return have[m][l] })
					for _, g := range u.grouping {
						switch g.keyword {
						case "by":
							ok = ok && slices.Contains(g.labels, l)
						case "without":
							ok = ok && !slices.Contains(g.labels, l)
						}
					}
					return ok
				}
				for _, key := range []string{"summary", "description"} {
					text := r.Annotations[key]
					if strings.TrimSpace(text) == "" {
						t.Errorf("%s: no annotations.%s", where, key)
						continue
					}
					tmpl, err := template.New(key).Funcs(alertTemplateFuncs).Parse(alertTemplatePrefix + text)
					if err != nil {
						t.Errorf("%s: annotations.%s: %v", where, key, err)
						continue
					}
					data := struct {
						Labels, ExternalLabels map[string]string
						ExternalURL            string
						Value                  float64
					}{map[string]string{}, map[string]string{}, "http://prometheus:9090", 1}
					if err := tmpl.Execute(io.Discard, data); err != nil {
						t.Errorf("%s: annotations.%s: %v", where, key, err)
					}
					for _, m := range labelRef.FindAllStringSubmatch(text, -1) {
						if !hasLabel(m[1]) {
							t.Errorf("%s: annotations.%s uses $labels.%s, which the expression's result does not have", where, key, m[1])
						}
					}
				}
				for k := range r.Annotations {
					if k != "summary" && k != "description" && k != "runbook_url" {
						t.Errorf("%s: annotation %q (the component's rules have summary and description)", where, k)
					}
				}
			}
		}
		// What the rules are for (issue 18).
		for _, a := range []string{
			"CowbirdDown", "CowbirdHandlerNotReady", "CowbirdJournalBacklogGrowing", "CowbirdEventsFailing",
			"CowbirdInotifyOverflow", "CowbirdInotifyWatchLimitReached", "CowbirdUpstreamErrors", "CowbirdReconcileFailing",
		} {
			if !alerts[a] {
				t.Errorf("no alert %s", a)
			}
		}
	})
}

// composeMounts are the short-syntax volumes of a service in our
// monitoring overlay, destination -> source.
func composeMounts(t *testing.T, svc map[string]any) map[string]mount {
	t.Helper()
	out := map[string]mount{}
	vols, _ := svc["volumes"].([]any)
	for _, v := range vols {
		m := parseMount(t, "monitoring overlay", v)
		out[m.dst] = m
	}
	return out
}

// TestBirdhouseMonitoringProvisioning checks that the overlay puts the
// files where the monitoring component's Prometheus and Grafana read them,
// without shadowing the component's own files.
func TestBirdhouseMonitoringProvisioning(t *testing.T) {
	var overlay struct {
		Services map[string]map[string]any
	}
	readYAML(t, filepath.Join(monitoringDir, "docker-compose-extra.yml"), &overlay)
	ours := component + "/config/monitoring/"
	source := func(t *testing.T, m mount, want string) {
		t.Helper()
		if m.src != ours+want || m.mode != "ro" {
			t.Errorf("%s is mounted from %s (%s), want %s%s read-only", m.dst, m.src, m.mode, ours, want)
		}
	}
	find := func(mounts map[string]mount, src string) (mount, bool) {
		for _, m := range mounts {
			if m.src == ours+src {
				return m, true
			}
		}
		return mount{}, false
	}

	prom := composeMounts(t, overlay.Services["prometheus"])
	if m, ok := find(prom, "scrape_configs.yml"); !ok {
		t.Error("prometheus: scrape_configs.yml is not mounted")
	} else if ok, _ := path.Match(prometheusScrapeFiles, m.dst); !ok {
		t.Errorf("prometheus: scrape config at %s, which %s does not match", m.dst, prometheusScrapeFiles)
	}
	if m, ok := find(prom, "prometheus.rules"); !ok {
		t.Error("prometheus: prometheus.rules is not mounted")
	} else if ok, _ := path.Match(prometheusRuleFiles, m.dst); !ok || m.dst == prometheusOwnRules {
		t.Errorf("prometheus: rules at %s: want a file matching %s other than the component's %s", m.dst, prometheusRuleFiles, prometheusOwnRules)
	}
	for _, m := range prom {
		source(t, m, strings.TrimPrefix(m.src, ours))
	}

	graf := overlay.Services["grafana"]
	gm := composeMounts(t, graf)
	pm, ok := find(gm, "grafana_dashboards.yml")
	if !ok {
		t.Fatal("grafana: grafana_dashboards.yml is not mounted")
	}
	if path.Dir(pm.dst) != grafanaProviders || pm.dst == grafanaOwnProvider || !strings.HasSuffix(pm.dst, ".yml") {
		t.Errorf("grafana: provider file at %s, want a new .yml in %s", pm.dst, grafanaProviders)
	}
	for _, m := range gm {
		source(t, m, strings.TrimPrefix(m.src, ours))
		if strings.HasPrefix(m.dst+"/", grafanaDashboardsMount+"/") {
			t.Errorf("grafana: %s is inside the monitoring component's read-only mount %s: docker cannot create the mount point", m.dst, grafanaDashboardsMount)
		}
	}

	var providers struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Folder, Type string
			FolderUID          string `yaml:"folderUid"`
			Options            struct{ Path string }
		}
	}
	readYAML(t, filepath.Join(monitoringDir, "grafana_dashboards.yml"), &providers)
	if providers.APIVersion != 1 || len(providers.Providers) != 1 {
		t.Fatalf("grafana_dashboards.yml: apiVersion %d, %d providers; want 1, 1", providers.APIVersion, len(providers.Providers))
	}
	p := providers.Providers[0]
	if p.Name == "" || p.Name == grafanaOwnProviderN || p.Type != "file" {
		t.Errorf("provider %q of type %q: want a file provider named other than the component's %q", p.Name, p.Type, grafanaOwnProviderN)
	}
	env, _ := graf["environment"].(map[string]any)
	for what, v := range map[string]string{"folder": p.Folder, "folderUid": p.FolderUID} {
		m := regexp.MustCompile(`^\$\{(\w+)\}$`).FindStringSubmatch(v)
		if m == nil {
			t.Errorf("provider %s %q: want the monitoring component's ${GRAFANA_DEFAULT_PROVIDER_...}", what, v)
			continue
		}
		val, set := env[m[1]]
		if !set || !strings.HasPrefix(fmt.Sprint(val), "${"+m[1]) {
			t.Errorf("provider %s ${%s}: grafana's environment sets it to %v, want the monitoring component's variable", what, m[1], val)
		}
	}
	dm, ok := gm[p.Options.Path]
	if !ok {
		t.Fatalf("provider path %s is not mounted into grafana (mounts %v)", p.Options.Path, slices.Sorted(maps.Keys(gm)))
	}
	dir := filepath.Join(componentDir, filepath.FromSlash(strings.TrimPrefix(dm.src, component+"/")))
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("provider path %s is mounted from %s, not a directory of the component (%v)", p.Options.Path, dm.src, err)
	}
	if _, ok := loadDashboards(t, dir)["cowbird.json"]; !ok {
		t.Errorf("%s has no cowbird.json", dm.src)
	}
}
