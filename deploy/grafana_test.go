package deploy

import (
	"encoding/json"
	"strings"
	"testing"
)

// dashboardPanel is what the shape test reads of a panel.
type dashboardPanel struct {
	ID         int
	Type       string
	Title      string
	Datasource struct{ Type, UID string }
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []struct {
		Expr       string
		Datasource struct{ UID string }
	}
}

// TestDashboardShape checks what the end-to-end test cannot see: every
// panel queries the dashboard's data source variable, ids are unique, and
// the panels the issues ask for are there, the cluster's in a Cluster row.
func TestDashboardShape(t *testing.T) {
	var d struct {
		UID        string
		Panels     []dashboardPanel
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
	section := map[string]string{} // expr -> title of the row above its panel ("" before any)
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			if len(p.Targets) > 0 || p.GridPos.W != 24 {
				t.Errorf("row %q: want no queries and the full width (gridPos %+v)", p.Title, p.GridPos)
			}
			continue
		}
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
			section[tg.Expr] = rowAbove(d.Panels, p.GridPos.Y)
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
	// Several nodes (issue 10): one row shows the cluster's health, per
	// relay, so the relay that lost NATS or fell behind stands out.
	for what, want := range map[string]string{
		"NATS connected per relay":    "by (instance) (chatrelay_nats_connected{",
		"log lag per relay":           "by (instance) (chatrelay_log_lag_events{",
		"lease refresh failures":      "by (instance) (rate(chatrelay_lease_refresh_failures_total{",
		"chats refused by the store":  `reason="store_unavailable"}[$__rate_interval]`,
		"logins refused by the store": `result="unavailable"}[$__rate_interval]`,
	} {
		found := false
		for expr, row := range section {
			if strings.Contains(expr, want) {
				found = true
				if row != "Cluster" {
					t.Errorf("dashboard: the %s panel (%s) is under row %q, want Cluster", what, expr, row)
				}
			}
		}
		if !found {
			t.Errorf("dashboard: no %s panel (no query containing %q)", what, want)
		}
	}
}

// rowAbove returns the title of the last row panel at or above line y, or
// "" when there is none: Grafana lays a dashboard out top down, and a row
// holds the panels below it down to the next row.
func rowAbove(panels []dashboardPanel, y int) string {
	title, at := "", -1
	for _, p := range panels {
		if p.Type == "row" && p.GridPos.Y <= y && p.GridPos.Y > at {
			title, at = p.Title, p.GridPos.Y
		}
	}
	return title
}
