package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const unitFile = "systemd/relay.service"

// unit is a parsed systemd unit: section -> key -> values, in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, text string) unit {
	t.Helper()
	u := unit{}
	section := ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: %q: want KEY=VALUE in a section (no continuation lines)", unitFile, i+1, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// last is the effective value of a key set once or more ("" if unset).
func (u unit) last(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

func TestSystemdUnitHardening(t *testing.T) {
	u := parseUnit(t, string(readFile(t, unitFile)))
	daemonFlags, _ := knownFlags(t)
	want := func(key, value string) {
		t.Helper()
		if got, _ := u.last("Service", key); got != value {
			t.Errorf("%s: %s=%s, want %s", unitFile, key, got, value)
		}
	}
	dyn, _ := u.last("Service", "DynamicUser")
	user, _ := u.last("Service", "User")
	if dyn != "yes" && (user == "" || user == "root" || user == "0") {
		t.Errorf("%s: neither DynamicUser=yes nor a dedicated User=", unitFile)
	}
	want("ProtectSystem", "strict")
	want("NoNewPrivileges", "yes")
	want("RuntimeDirectory", "relay")
	if caps, ok := u.last("Service", "CapabilityBoundingSet"); !ok || caps != "" {
		t.Errorf("%s: CapabilityBoundingSet=%q (set: %v), want it set empty: no capabilities", unitFile, caps, ok)
	}
	if amb, _ := u.last("Service", "AmbientCapabilities"); amb != "" {
		t.Errorf("%s: AmbientCapabilities=%s, want none", unitFile, amb)
	}
	if r, _ := u.last("Service", "Restart"); r != "on-failure" && r != "always" {
		t.Errorf("%s: Restart=%s, want on-failure", unitFile, r)
	}
	if _, ok := u.last("Install", "WantedBy"); !ok {
		t.Errorf("%s: no [Install] WantedBy=, so systemctl enable does nothing", unitFile)
	}

	// ExecStart: the relay with flags it knows, the admin socket in the
	// RuntimeDirectory, metrics on loopback.
	exec, _ := u.last("Service", "ExecStart")
	fields := strings.Fields(exec)
	if len(fields) == 0 || fields[0] != "/usr/local/bin/relay" {
		t.Fatalf("%s: ExecStart=%s, want /usr/local/bin/relay ... (the README's install path)", unitFile, exec)
	}
	args := flagArgs(t, fields[1:])
	checkFlags(t, unitFile+" ExecStart", args, daemonFlags)
	if got := path.Dir(args["admin-socket"]); got != "/run/relay" {
		t.Errorf("%s: --admin-socket %s, want it in /run/relay (RuntimeDirectory=relay)", unitFile, args["admin-socket"])
	}
	if !strings.HasPrefix(args["metrics-listen"], "127.0.0.1:") {
		t.Errorf("%s: --metrics-listen %q, want loopback on a host install", unitFile, args["metrics-listen"])
	}
}

// installedUnit writes the unit with ExecStart pointing at a freshly built
// relay, since systemd-analyze verify fails for a missing binary.
func installedUnit(t *testing.T) string {
	t.Helper()
	bin := relayBinary(t)
	text := string(readFile(t, unitFile))
	const orig = "ExecStart=/usr/local/bin/relay "
	if !strings.Contains(text, orig) {
		t.Fatalf("%s: no %q line to rewrite", unitFile, orig)
	}
	f := filepath.Join(t.TempDir(), "relay.service")
	if err := os.WriteFile(f, []byte(strings.Replace(text, orig, "ExecStart="+bin+" ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func systemdAnalyze(t *testing.T, args ...string) (string, error) {
	t.Helper()
	sa := tool(t, "systemd-analyze", "systemd")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, sa, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func TestSystemdAnalyzeVerify(t *testing.T) {
	f := installedUnit(t)
	out, err := systemdAnalyze(t, "verify", f)
	// verify exits 0 on unknown keys and bad values, only printing them:
	// any line about our unit is a failure.
	if err != nil || strings.Contains(out, filepath.Base(f)) || strings.Contains(out, f) {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", f, err, out)
	}

	// The check is real: a typo'd key and a missing binary are caught.
	bad := filepath.Join(t.TempDir(), "relay.service")
	text := string(readFile(t, f))
	os.WriteFile(bad, []byte(strings.Replace(text, "ProtectSystem=strict", "ProtectSytem=strict", 1)), 0o644)
	if out, _ := systemdAnalyze(t, "verify", bad); !strings.Contains(out, "ProtectSytem") {
		t.Errorf("systemd-analyze verify did not report a typo'd key:\n%s", out)
	}
	os.WriteFile(bad, []byte(strings.Replace(text, relayBinary(t), "/nonexistent/relay", 1)), 0o644)
	if out, err := systemdAnalyze(t, "verify", bad); err == nil {
		t.Errorf("systemd-analyze verify passed a unit whose binary is missing:\n%s", out)
	}
}

func TestSystemdAnalyzeSecurity(t *testing.T) {
	f := installedUnit(t)
	// Exposure is 0.0 (locked down) to 10.0 (unsafe); --threshold is in
	// tenths. 2.0 keeps the unit in systemd's "OK" band.
	out, err := systemdAnalyze(t, "security", "--offline=true", "--threshold=20", f)
	if err != nil {
		t.Fatalf("systemd-analyze security: exposure above 2.0 or error: %v\n%s", err, out)
	}
	if i := strings.Index(out, "Overall exposure level"); i >= 0 {
		t.Log(strings.TrimSpace(out[i:]))
	}
}

// TestSystemdStateDirectory: the unit's StateDirectory is where
// deploy/relay.yaml's commented data-dir line points, that line put in place
// of the default one makes a config file the relay accepts, and ExecStart
// leaves data-dir to the file.
func TestSystemdStateDirectory(t *testing.T) {
	u := parseUnit(t, string(readFile(t, unitFile)))
	state, _ := u.last("Service", "StateDirectory")
	if state != "relay" {
		t.Fatalf("%s: StateDirectory=%s, want relay (/var/lib/relay, for --data-dir)", unitFile, state)
	}
	if mode, _ := u.last("Service", "StateDirectoryMode"); mode != "0700" {
		t.Errorf("%s: StateDirectoryMode=%s, want 0700: rooms' history is the relay's alone", unitFile, mode)
	}
	const config = "relay.yaml"
	text := string(readFile(t, config))
	def := regexp.MustCompile(`(?m)^data-dir: "".*$`).FindString(text)
	on := regexp.MustCompile(`(?m)^# (data-dir: "([^"]*)").*$`).FindStringSubmatch(text)
	if def == "" || on == nil {
		t.Fatalf("%s: want the default data-dir: \"\" line and a commented data-dir: \"/var/lib/%s\" line", config, state)
	}
	if on[2] != "/var/lib/"+state {
		t.Errorf("%s: the commented data-dir is %s, want /var/lib/%s (the unit's StateDirectory)", config, on[2], state)
	}
	// The unit's ExecStart repeats the file's sockets on purpose, but must
	// leave data-dir to the file.
	exec, _ := u.last("Service", "ExecStart")
	if d, ok := flagArgs(t, strings.Fields(exec)[1:])["data-dir"]; ok {
		t.Errorf("%s: ExecStart sets --data-dir %s, which hides relay.yaml's data-dir", unitFile, d)
	}
	daemon, _ := knownFlags(t)
	checkConfigFile(t, config+" with "+on[1], strings.Replace(text, def, on[1], 1), nil, daemon)
}

// TestSystemdSeveralNodes: relay.yaml's commented cluster lines, put in
// place, make a config file the relay accepts; their nats-creds is where
// the unit's commented LoadCredential= puts the file; and that line,
// uncommented, passes systemd-analyze verify.
func TestSystemdSeveralNodes(t *testing.T) {
	const config = "relay.yaml"
	text := string(readFile(t, config))
	keys := regexp.MustCompile(`(?m)^# ((nats|nats-replicas|node|name-lease|nats-creds): .*)$`).FindAllStringSubmatch(text, -1)
	on := text
	got := map[string]bool{}
	for _, k := range keys {
		got[k[2]] = true
		// The line replaces the default line of its key, as the file says.
		on = regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(k[2])+`: .*\n`).ReplaceAllString(on, "")
		on = strings.Replace(on, k[0], k[1], 1)
	}
	for _, want := range []string{"nats", "nats-replicas", "node", "nats-creds"} {
		if !got[want] {
			t.Errorf("%s: no commented %s: line for several nodes", config, want)
		}
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(on), &m); err != nil {
		t.Fatalf("%s with the cluster lines uncommented: %v", config, err)
	}
	if d, _ := m["data-dir"].(string); d != "" {
		t.Errorf("%s: data-dir %q by default: with nats set the relay would refuse to start", config, d)
	}
	daemon, _ := knownFlags(t)
	if clusterPending(t) {
		known := withClusterFlags(t, config, daemon)
		for k := range m {
			if !known[k] {
				t.Errorf("%s: key %q is not a flag of the relay", config, k)
			}
		}
	} else {
		checkConfigFile(t, config+" with the cluster lines", on, nil, daemon)
	}

	// The credentials: LoadCredential=ID:PATH gives the dynamic user the
	// file as $CREDENTIALS_DIRECTORY/ID, /run/credentials/UNIT/ID.
	unitText := string(readFile(t, unitFile))
	lc := regexp.MustCompile(`(?m)^#(LoadCredential=([^:\s]+):\S+)$`).FindStringSubmatch(unitText)
	if lc == nil {
		t.Fatalf("%s: no commented LoadCredential=ID:PATH line for the NATS credentials", unitFile)
	}
	if want := "/run/credentials/" + path.Base(unitFile) + "/" + lc[2]; m["nats-creds"] != want {
		t.Errorf("%s: nats-creds %v, want %s (the unit's %s)", config, m["nats-creds"], want, lc[1])
	}
	f := installedUnit(t)
	withCreds := filepath.Join(t.TempDir(), "relay.service")
	if err := os.WriteFile(withCreds, []byte(strings.Replace(string(readFile(t, f)), lc[0], lc[1], 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := systemdAnalyze(t, "verify", withCreds)
	if err != nil || strings.Contains(out, filepath.Base(withCreds)) {
		t.Errorf("systemd-analyze verify with %s: %v\n%s", lc[1], err, out)
	}
}
