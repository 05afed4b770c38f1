package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestDashboardMetrics: every metric the Grafana dashboard
// (deploy/grafana/hearth.json) queries is one the server registers (a
// histogram's _bucket, _sum and _count series included), and the
// dashboard uses the model and version labels.
func TestDashboardMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "hearth.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	if len(exprs) < 10 {
		t.Fatalf("only %d queries in the dashboard", len(exprs))
	}

	e := newEnv(t, nil, nil)
	known := e.srv.metrics.metricNames()
	metricRE := regexp.MustCompile(`\bhearth_[a-z0-9_]+`)
	used := map[string]bool{}
	for _, x := range exprs {
		for _, name := range metricRE.FindAllString(x, -1) {
			base := name
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suf); ok && known[b] {
					base = b
				}
			}
			if !known[base] {
				t.Errorf("the dashboard queries %s, which the server does not export (in %q)", name, x)
			}
			used[base] = true
		}
	}
	var unused []string
	for n := range known {
		if !used[n] {
			unused = append(unused, n)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Logf("metrics not on the dashboard: %v", unused)
	}
	all := strings.Join(exprs, "\n")
	if !strings.Contains(all, "version") || !strings.Contains(all, "model") {
		t.Error("the dashboard does not break down by model and version")
	}
}
