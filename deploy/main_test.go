package deploy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
)

// buildDir holds the relay binary the tests build once; removed after them.
var buildDir string

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent(), goleak.Cleanup(func(int) {
		if buildDir != "" {
			os.RemoveAll(buildDir)
		}
	}))
}

// requireToolsEnv, set to 1 (as .ci/run does), turns a missing tool from
// a skip into a failure.
const requireToolsEnv = "CHATRELAY_REQUIRE_TOOLS"

// tool returns the path of the program name, or skips the test with how to
// install it (fails instead under CHATRELAY_REQUIRE_TOOLS=1).
func tool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := name + " not found (apt-get install " + debianPackage + ")"
	if os.Getenv(requireToolsEnv) == "1" {
		t.Fatalf("%s, and %s=1 requires it", msg, requireToolsEnv)
	}
	t.Skipf("%s: skipping; %s=1 makes this a failure", msg, requireToolsEnv)
	return ""
}

var (
	buildOnce sync.Once
	relayBin  string
	buildErr  error
	buildLog  []byte
)

// relayBinary builds cmd/relay once, statically (CGO_ENABLED=0, as the
// Dockerfile does), and returns its path.
func relayBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		var goBin string
		if goBin, buildErr = goTool(); buildErr != nil {
			return
		}
		if buildDir, buildErr = os.MkdirTemp("", "chatrelay-deploy-"); buildErr != nil {
			return
		}
		relayBin = filepath.Join(buildDir, "relay")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", relayBin, "./cmd/relay")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		buildLog, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/relay: %v\n%s", buildErr, buildLog)
	}
	return relayBin
}

// goTool returns the go command of the toolchain running the tests, or the
// one on PATH.
func goTool() (string, error) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err == nil {
		return goBin, nil
	}
	return exec.LookPath("go")
}

var (
	flagsOnce   sync.Once
	relayFlags  map[string]bool
	healthFlags map[string]bool
)

// knownFlags returns the long flag names `relay --help` and `relay health
// --help` list, so that every command line in deploy/ can be checked
// against the binary itself.
func knownFlags(t *testing.T) (daemon, health map[string]bool) {
	t.Helper()
	bin := relayBinary(t)
	flagsOnce.Do(func() {
		relayFlags = helpFlags(t, bin, "--help")
		healthFlags = helpFlags(t, bin, "health", "--help")
	})
	if len(relayFlags) < 10 || !relayFlags["metrics-listen"] || !healthFlags["metrics-listen"] {
		t.Fatalf("could not read the flags from relay --help: %v / %v", relayFlags, healthFlags)
	}
	return relayFlags, healthFlags
}

// clusterFlags are the relay flags of issue 10's several nodes, by the
// contract deploy/ was written against while the relay side was built on
// another branch: the deploy files use them before that branch lands.
var clusterFlags = []string{"nats", "nats-creds", "nats-tls-ca", "nats-tls-cert", "nats-tls-key", "nats-replicas", "node", "name-lease"}

// clusterSeries are what the same contract adds to /metrics (with
// --data-dir or --nats only): metric names, and label values of existing
// counters as PromQL matchers.
var clusterSeries = []string{
	"chatrelay_nats_connected", "chatrelay_log_lag_events", "chatrelay_lease_refresh_failures_total",
	`reason="store_unavailable"`, `result="unavailable"`,
}

// clusterPending reports whether the relay built from this tree predates
// issue 10's cluster side (it has no --nats). Then the tests check the
// deploy files' use of the contract only against the contract, and log
// what they could not check against the relay; once the relay has --nats,
// every flag and series of the contract must be the relay's.
func clusterPending(t *testing.T) bool {
	t.Helper()
	daemon, _ := knownFlags(t)
	return !daemon["nats"]
}

// withClusterFlags returns known plus clusterFlags while clusterPending,
// and known itself otherwise.
func withClusterFlags(t *testing.T, where string, known map[string]bool) map[string]bool {
	t.Helper()
	if !clusterPending(t) {
		return known
	}
	t.Logf("%s: this relay has no --nats yet (issue 10's cluster side); its flags are checked against the contract: %v", where, clusterFlags)
	out := map[string]bool{}
	for k := range known {
		out[k] = true
	}
	for _, f := range clusterFlags {
		out[f] = true
	}
	return out
}

// envFlag maps a RELAY_* environment variable to the flag it sets
// (RELAY_NATS_REPLICAS: nats-replicas), as the relay derives them.
func envFlag(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "RELAY_")
	if !ok || rest == "" {
		return "", false
	}
	return strings.ToLower(strings.ReplaceAll(rest, "_", "-")), true
}

var helpFlagRE = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

func helpFlags(t *testing.T, bin string, args ...string) map[string]bool {
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("relay %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	flags := map[string]bool{}
	for _, m := range helpFlagRE.FindAllStringSubmatch(out.String(), -1) {
		flags[m[1]] = true
	}
	return flags
}

// flagArgs parses a relay command line (after the program name) into flag
// name -> value, accepting --name=value and --name value. Boolean flags are
// not used in deploy/, so every flag takes a value.
func flagArgs(t *testing.T, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			t.Fatalf("argument %q in %q is not a flag", a, args)
		}
		name := strings.TrimLeft(a, "-")
		if k, v, ok := strings.Cut(name, "="); ok {
			out[k] = v
			continue
		}
		if i+1 >= len(args) {
			t.Fatalf("flag %q in %q has no value", a, args)
		}
		out[name] = args[i+1]
		i++
	}
	return out
}

// checkFlags fails the test for each flag in got that known lacks.
func checkFlags(t *testing.T, where string, got map[string]string, known map[string]bool) {
	t.Helper()
	for name := range got {
		if !known[name] {
			t.Errorf("%s: --%s is not a flag of the relay built from this tree", where, name)
		}
	}
}

// readFile returns the file's contents or fails the test.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlDocs decodes every YAML document in path into generic values.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return docs
}

// get walks a generic YAML/JSON value along keys (map keys, or list
// indexes given as int) and returns nil when any step is missing.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func num(v any, path ...any) int {
	n, _ := get(v, path...).(int)
	return n
}

func list(v any, path ...any) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func strList(v any, path ...any) []string {
	var out []string
	for _, e := range list(v, path...) {
		s, ok := e.(string)
		if !ok {
			return nil
		}
		out = append(out, s)
	}
	return out
}

func stringMap(v any, path ...any) map[string]string {
	m, _ := get(v, path...).(map[string]any)
	out := map[string]string{}
	for k, e := range m {
		s, ok := e.(string)
		if !ok {
			return nil
		}
		out[k] = s
	}
	return out
}

// subset reports whether every key=value of sel is in labels; an empty
// selector selects nothing here (the manifests never mean "everything").
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
