package deploy

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDashboardShape checks what the end-to-end test cannot see: every
// panel queries the dashboard's data source variable, ids are unique, and
// the panels the issue asks for are there.
func TestDashboardShape(t *testing.T) {
	var d struct {
		UID    string
		Panels []struct {
			ID         int
			Title      string
			Datasource struct{ Type, UID string }
			GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
			Targets    []struct {
				Expr       string
				Datasource struct{ UID string }
			}
		}
		Templating struct {
			List []struct{ Name, Type string }
		}
	}
	if err := json.Unmarshal(readFile(t, "grafana/relay-dashboard.json"), &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" {
		t.Error("dashboard has no uid: links to it would break on every import")
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["job"] != "query" || vars["instance"] != "query" {
		t.Errorf("template variables %v: want datasource, job and instance", vars)
	}
	ids := map[int]bool{}
	var all strings.Builder
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: data source %q, want ${datasource}", p.Title, p.Datasource.UID)
		}
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v does not fit Grafana's 24 columns", p.Title, p.GridPos)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `job=~"$job"`) || !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: %s ignores the job or instance variable", p.Title, tg.Expr)
			}
			all.WriteString(tg.Expr + "\n")
		}
	}
	exprs := all.String()
	for what, want := range map[string]string{
		"members":                  "chatrelay_members{",
		"logins by result":         "sum by (result) (rate(chatrelay_logins_total{",
		"broadcasts per second":    "rate(chatrelay_broadcasts_total{",
		"deliveries per second":    "rate(chatrelay_deliveries_total{",
		"drops by reason":          "sum by (reason) (rate(chatrelay_datagrams_dropped_total{",
		"pool saturation":          "chatrelay_pool_running{job=~\"$job\", instance=~\"$instance\"}) / sum by (instance) (chatrelay_pool_capacity{",
		"handler latency p99":      "histogram_quantile(0.99, sum by (le) (rate(chatrelay_handler_duration_seconds_bucket{",
		"$__rate_interval in rate": "[$__rate_interval]",
	} {
		if !strings.Contains(exprs, want) {
			t.Errorf("dashboard: no %s panel (no query containing %q)", what, want)
		}
	}
}
