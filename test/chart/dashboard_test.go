package chart

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// externalMetrics are the metrics the dashboard may read that Switchboard
// does not export, with where they come from. docs/metrics.md lists them.
var externalMetrics = map[string]string{
	"container_cpu_usage_seconds_total": "cAdvisor (kubelet)",
	"kube_pod_status_ready":             "kube-state-metrics",
	"kube_pod_deletion_timestamp":       "kube-state-metrics",
	"up":                                "Prometheus",
}

var metricName = regexp.MustCompile(`^switchboard_[a-z0-9_]+$`)

// libraryMetrics are metrics a client_golang collector exports under its
// own names, keyed by name, with the collector constructor whose call in
// the module's non-test source proves a registry of ours carries them
// (sfu/metrics.go registers the process collector on every SFU's /metrics).
var libraryMetrics = map[string]string{
	"process_cpu_seconds_total": "collectors.NewProcessCollector",
}

// exportedMetrics returns the switchboard_* metric names in the module's
// non-test Go source: every string literal that is a whole metric name (the
// names given to prometheus.NewDesc and the *Opts). A name built at run
// time (Namespace/Subsystem, BuildFQName) is not found, so the dashboard
// test fails rather than trusting it. It adds the libraryMetrics whose
// collector constructor the source calls.
func exportedMetrics(t *testing.T) map[string]string {
	t.Helper()
	root := repoRoot(t)
	found := map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch rel {
			case "bin", "hack", "test", "charts", "docs", "config", ".git":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
					if pkg, ok := sel.X.(*ast.Ident); ok {
						for name, ctor := range libraryMetrics {
							if pkg.Name+"."+sel.Sel.Name == ctor {
								found[name] = rel
							}
						}
					}
				}
			}
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && metricName.MatchString(s) {
				found[s] = rel
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatalf("scan Go source: %v", err)
	}
	return found
}

// promqlKeywords are words in PromQL that are neither metrics nor functions:
// operators, modifiers and the aggregation operators (which may be followed
// by a grouping clause instead of a parenthesis).
var promqlKeywords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true, "count": true,
	"count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true,
}

// labelLists are keywords followed by a parenthesised list of label names.
var labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// metricsIn returns the metric names a PromQL expression (or a Grafana
// label_values() query) reads. It skips label matchers, ranges, strings,
// numbers, Grafana variables, functions and grouping label lists.
func metricsIn(expr string) []string {
	if inner, ok := strings.CutPrefix(strings.TrimSpace(expr), "label_values("); ok {
		if i := strings.LastIndex(inner, ","); i >= 0 {
			expr = inner[:i]
		} else {
			return nil
		}
	}
	var out []string
	s := expr
	skipBalanced := func(i int, open, close byte) int {
		depth := 0
		for ; i < len(s); i++ {
			switch c := s[i]; {
			case c == '"' || c == '\'' || c == '`':
				j := strings.IndexByte(s[i+1:], c)
				if j < 0 {
					return len(s)
				}
				i += j + 1
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(s)
	}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
	isIdent := func(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '{':
			i = skipBalanced(i, '{', '}')
		case c == '[':
			i = skipBalanced(i, '[', ']')
		case c == '"' || c == '\'' || c == '`':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return out
			}
			i += j + 2
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				i = skipBalanced(i, '{', '}')
				continue
			}
			for i < len(s) && isIdent(s[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.' || s[i] == 'e' || s[i] == 'E' || s[i] == 'x' ||
				((s[i] == '+' || s[i] == '-') && (s[i-1] == 'e' || s[i-1] == 'E'))) {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			k := j
			for k < len(s) && s[k] == ' ' {
				k++
			}
			switch {
			case labelLists[strings.ToLower(word)]:
				if k < len(s) && s[k] == '(' {
					k = skipBalanced(k, '(', ')')
				}
				j = k
			case promqlKeywords[strings.ToLower(word)]:
			case k < len(s) && s[k] == '(':
				// a function call
			default:
				out = append(out, word)
			}
			i = j
		default:
			i++
		}
	}
	return out
}

func TestMetricsInFindsOnlyMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum by (app, source) (rate(switchboard_egress_bytes_total{app=~"$app", source="sfu"}[$__rate_interval]))`, []string{"switchboard_egress_bytes_total"}},
		{`clamp_min(sum by (app) (increase(a_total[$__range])) / 1e9 - $free_gb, 0) * ${price}`, []string{"a_total"}},
		{`x / on (namespace, pod) (y > bool 0) * 1.5e-3`, []string{"x", "y"}},
		{`label_values(switchboard_sessions{namespace=~"$ns"}, app)`, []string{"switchboard_sessions"}},
		{`up{job="a,b"} or without (pod) not_exported_total`, []string{"up", "not_exported_total"}},
	} {
		if got := metricsIn(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("metricsIn(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) (dashboard, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir(t), "files", "grafana", "switchboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dec.More() {
		t.Fatal("dashboard JSON has trailing content")
	}
	return d, b
}

// queries returns every PromQL expression of the dashboard with where it is.
func (d dashboard) queries() map[string][]string {
	q := map[string][]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				q[p.Title] = append(q[p.Title], tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		switch qv := v.Query.(type) {
		case string:
			q["variable "+v.Name] = append(q["variable "+v.Name], qv)
		case map[string]any:
			s, _ := qv["query"].(string)
			q["variable "+v.Name] = append(q["variable "+v.Name], s)
		}
	}
	return q
}

// The dashboard reads only metrics the code exports (or the few external
// ones it names), so a renamed metric breaks this test, not the dashboard.
func TestDashboardReadsOnlyExportedMetrics(t *testing.T) {
	d, _ := loadDashboard(t)
	exported := exportedMetrics(t)
	if len(exported) == 0 {
		t.Fatal("found no switchboard_* metric names in the Go source")
	}
	used := map[string]bool{}
	for where, exprs := range d.queries() {
		for _, e := range exprs {
			if strings.TrimSpace(e) == "" {
				t.Errorf("%s: empty query", where)
			}
			names := metricsIn(e)
			if len(names) == 0 {
				t.Errorf("%s: query reads no metric: %s", where, e)
			}
			for _, n := range names {
				used[n] = true
				if _, ok := exported[n]; ok {
					continue
				}
				if _, ok := externalMetrics[n]; ok {
					continue
				}
				t.Errorf("%s reads %s, which the code does not export (exported: %v)", where, n, keys(exported))
			}
		}
	}
	// The panels the issue asks for are there.
	for _, m := range []string{
		"switchboard_egress_bytes_total", "switchboard_sessions", "switchboard_tracks", "switchboard_rate_limited_total",
		"container_cpu_usage_seconds_total", "kube_pod_deletion_timestamp",
		"switchboard_forwarded_packets_total", "process_cpu_seconds_total", "switchboard_draining",
	} {
		if !used[m] {
			t.Errorf("no panel reads %s", m)
		}
	}
}

func TestDashboardIsWellFormed(t *testing.T) {
	d, raw := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q uid %q: both are needed for provisioning", d.Title, d.UID)
	}
	ids := map[int]string{}
	var titles []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, ok := ids[p.ID]; ok || p.ID == 0 {
				t.Errorf("panel %q has id %d, already used by %q (or zero)", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			titles = append(titles, p.Title)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, want := range []string{"Egress per app", "Egress and estimated cost over the dashboard range", "Sessions per app", "Tracks per app",
		"Throttled requests", "Forwarding CPU per egress MB", "Forwarding CPU per packet", "Pod drain state"} {
		if !slices.Contains(titles, want) {
			t.Errorf("dashboard lacks the panel %q (have %q)", want, titles)
		}
	}
	// Every $variable a query uses is defined (Grafana's own are $__*).
	defined := map[string]bool{}
	for _, v := range d.Templating.List {
		defined[v.Name] = true
	}
	for _, m := range regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(string(raw), -1) {
		if !strings.HasPrefix(m[1], "__") && !defined[m[1]] {
			t.Errorf("dashboard uses $%s, which no template variable defines", m[1])
		}
	}
}

// docs/metrics.md documents every metric the code exports and every
// external metric the dashboard reads.
func TestMetricsDocListsEveryMetric(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, n := range append(keys(exportedMetrics(t)), keys(externalMetrics)...) {
		if !strings.Contains(doc, "`"+n) {
			t.Errorf("docs/metrics.md does not document %s", n)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
