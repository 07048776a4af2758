package deploy

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin := tool(t, "promtool", "prometheus")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	t.Logf("promtool %s: ok", strings.Join(args, " "))
}

func TestPromtoolCheckConfig(t *testing.T) {
	configs, _ := filepath.Glob("prometheus/prometheus*.yml")
	if len(configs) < 2 {
		t.Fatalf("want prometheus.yml and prometheus-compose.yml, have %v", configs)
	}
	// check config also checks the rule files each config lists.
	promtool(t, append([]string{"check", "config"}, configs...)...)
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool(t, append([]string{"check", "rules"}, ruleFiles(t)...)...)
}

func TestPromtoolTestRules(t *testing.T) {
	tests, _ := filepath.Glob("prometheus/*_test.yml")
	if len(tests) == 0 {
		t.Fatal("no prometheus/*_test.yml")
	}
	promtool(t, append([]string{"test", "rules"}, tests...)...)
}

// alertRules returns every alerting rule in the rule files.
func alertRules(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, f := range ruleFiles(t) {
		for _, g := range list(yamlDocs(t, f)[0], "groups") {
			for _, r := range list(g, "rules") {
				if m, ok := r.(map[string]any); ok && str(m, "alert") != "" {
					out = append(out, m)
				}
			}
		}
	}
	return out
}

// TestAlertsHaveRunbooksAndTests: the alerts of issue 6 (one relay) and of
// issue 10 (several nodes on NATS) exist, each says what to do in one line,
// and each is shown both firing and quiet in a promtool test.
func TestAlertsHaveRunbooksAndTests(t *testing.T) {
	fired, quiet := map[string]bool{}, map[string]bool{}
	tests, _ := filepath.Glob("prometheus/*_test.yml")
	for _, f := range tests {
		for _, tc := range list(yamlDocs(t, f)[0], "tests") {
			for _, at := range list(tc, "alert_rule_test") {
				if len(list(at, "exp_alerts")) > 0 {
					fired[str(at, "alertname")] = true
				} else {
					quiet[str(at, "alertname")] = true
				}
			}
		}
	}
	have := map[string]bool{}
	for _, r := range alertRules(t) {
		name := str(r, "alert")
		have[name] = true
		rb := str(r, "annotations", "runbook")
		if rb == "" || strings.Contains(strings.TrimSpace(rb), "\n") {
			t.Errorf("alert %s: runbook annotation %q: want one line saying what to do", name, rb)
		}
		if str(r, "annotations", "summary") == "" || str(r, "labels", "severity") == "" {
			t.Errorf("alert %s: want a summary annotation and a severity label", name)
		}
		if !fired[name] {
			t.Errorf("alert %s: no promtool test shows it firing", name)
		}
		if !quiet[name] {
			t.Errorf("alert %s: no promtool test shows it quiet (exp_alerts: [])", name)
		}
	}
	for _, want := range []string{
		"ChatrelayDown", "ChatrelayDropRateHigh", "ChatrelayPoolSaturated", "ChatrelayLoginRefusalsSpiking", "ChatrelaySendErrors",
		"ChatrelayNATSDisconnected", "ChatrelayLogLagHigh", "ChatrelayLeaseRefreshFailing", "ChatrelayStoreUnavailable",
	} {
		if !have[want] {
			t.Errorf("no alert %s", want)
		}
	}
}
