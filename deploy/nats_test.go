package deploy

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// natsServerVersion is the nats-server version go.mod requires: the one the
// relay embeds for --data-dir and its JetStream code is tested against, so
// the NATS servers deploy/ runs for --nats are that version too.
func natsServerVersion(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v(\S+)`).FindSubmatch(readFile(t, "../go.mod"))
	if m == nil {
		t.Fatal("go.mod does not require github.com/nats-io/nats-server/v2")
	}
	return string(m[1])
}

var (
	natsFlagsOnce sync.Once
	natsFlagSet   map[string]bool
	natsFlagsErr  error
)

var natsFlagRE = regexp.MustCompile(`fs\.(\w+?)(?:64)?Var\(&[\w.]+, "([^"]+)"`)

// natsServerFlags returns nats-server's command-line flags, name -> whether
// it is boolean, as its ConfigureOptions defines them in the module go.mod
// requires (the module cache has it: the relay is built from it).
func natsServerFlags(t *testing.T) map[string]bool {
	t.Helper()
	natsFlagsOnce.Do(func() {
		goBin, err := goTool()
		if err != nil {
			natsFlagsErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var out, errOut bytes.Buffer
		cmd := exec.CommandContext(ctx, goBin, "list", "-m", "-f", "{{.Dir}}", "github.com/nats-io/nats-server/v2")
		cmd.Dir = ".."
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if natsFlagsErr = cmd.Run(); natsFlagsErr != nil {
			natsFlagsErr = &exec.Error{Name: "go list -m github.com/nats-io/nats-server/v2: " + errOut.String(), Err: natsFlagsErr}
			return
		}
		src, err := os.ReadFile(filepath.Join(strings.TrimSpace(out.String()), "server", "opts.go"))
		if err != nil {
			natsFlagsErr = err
			return
		}
		natsFlagSet = map[string]bool{}
		for _, m := range natsFlagRE.FindAllStringSubmatch(string(src), -1) {
			natsFlagSet[m[2]] = m[1] == "Bool"
		}
	})
	if natsFlagsErr != nil {
		t.Fatalf("reading nats-server's flags: %v", natsFlagsErr)
	}
	for _, f := range []string{"js", "store_dir", "server_name", "cluster", "cluster_name", "routes", "http_port"} {
		if _, ok := natsFlagSet[f]; !ok {
			t.Fatalf("could not read nats-server's flags from its opts.go (no --%s among %v)", f, sortedKeys(natsFlagSet))
		}
	}
	return natsFlagSet
}

// natsAlias maps nats-server's short and long spellings of a flag to one
// name, so that checks need not know which one a file uses.
var natsAlias = map[string]string{
	"jetstream": "js", "sd": "store_dir", "n": "server_name", "name": "server_name",
	"m": "http_port", "p": "port", "a": "addr", "c": "config",
}

// natsArgs parses a nats-server command line (after the program name) into
// flag -> value ("true" for a boolean flag given alone), failing the test
// for a flag nats-server does not have or one given twice.
func natsArgs(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	flags := natsServerFlags(t)
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			t.Fatalf("%s: argument %q in %q is not a flag", where, a, args)
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		isBool, known := flags[name]
		if !known {
			t.Errorf("%s: --%s is not a flag of nats-server %s", where, name, natsServerVersion(t))
			continue
		}
		switch {
		case hasValue:
		case isBool:
			value = "true"
		case i+1 < len(args):
			value = args[i+1]
			i++
		default:
			t.Fatalf("%s: --%s has no value", where, name)
		}
		if canon, ok := natsAlias[name]; ok {
			name = canon
		}
		if _, dup := out[name]; dup {
			t.Errorf("%s: --%s given twice", where, name)
		}
		out[name] = value
	}
	return out
}

// natsServer is one server of a NATS cluster as a deploy file runs it: what
// the file calls it, the host name the others and the relays reach it by,
// and its flags.
type natsServer struct {
	name, host string
	args       map[string]string
}

func (s natsServer) port(t *testing.T, flag string, def int) int {
	t.Helper()
	v, ok := s.args[flag]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("nats server %s: --%s %q is no port", s.name, flag, v)
	}
	return n
}

// clusterPort is the port of --cluster's URL (the route listener).
func (s natsServer) clusterPort(t *testing.T) int {
	t.Helper()
	u, err := url.Parse(s.args["cluster"])
	if err != nil || u.Port() == "" {
		t.Fatalf("nats server %s: --cluster %q: want nats://HOST:PORT", s.name, s.args["cluster"])
	}
	n, _ := strconv.Atoi(u.Port())
	return n
}

// checkNATSCluster checks that servers form one JetStream cluster: each
// has JetStream on with a store directory, a name of its own (JetStream
// needs it to place replicas), the same cluster name, a route listener,
// and routes that reach every other server at its route port and nothing
// else. It returns each server's client address (host:port), the ones a
// relay's --nats must list.
func checkNATSCluster(t *testing.T, where string, servers []natsServer) []string {
	t.Helper()
	routeAddr := map[string]string{} // host:clusterport -> server
	names := map[string]string{}
	var clients []string
	for _, s := range servers {
		if s.args["js"] != "true" {
			t.Errorf("%s: nats server %s has no --js: no JetStream, so no rooms' logs or names", where, s.name)
		}
		if s.args["store_dir"] == "" {
			t.Errorf("%s: nats server %s has no --store_dir: JetStream would store in a temporary directory", where, s.name)
		}
		name := s.args["server_name"]
		if name == "" {
			t.Errorf("%s: nats server %s has no --server_name", where, s.name)
		} else if other, dup := names[name]; dup {
			t.Errorf("%s: nats servers %s and %s are both named %s: JetStream needs distinct names", where, other, s.name, name)
		}
		names[name] = s.name
		if s.args["cluster_name"] == "" || s.args["cluster_name"] != servers[0].args["cluster_name"] {
			t.Errorf("%s: nats server %s: --cluster_name %q, want one name, the same on every server (%q)", where, s.name, s.args["cluster_name"], servers[0].args["cluster_name"])
		}
		routeAddr[s.host+":"+strconv.Itoa(s.clusterPort(t))] = s.name
		clients = append(clients, s.host+":"+strconv.Itoa(s.port(t, "port", 4222)))
	}
	for _, s := range servers {
		reached := map[string]bool{}
		for _, r := range strings.Split(s.args["routes"], ",") {
			u, err := url.Parse(strings.TrimSpace(r))
			if err != nil || u.Port() == "" {
				t.Errorf("%s: nats server %s: route %q: want nats://HOST:PORT", where, s.name, r)
				continue
			}
			other, ok := routeAddr[u.Host]
			if !ok {
				t.Errorf("%s: nats server %s: route %s is the route port of no server of the cluster (%v)", where, s.name, u.Host, sortedKeys(routeAddr))
			}
			reached[other] = true
		}
		for _, o := range servers {
			if o.name != s.name && !reached[o.name] {
				t.Errorf("%s: nats server %s has no route to %s: if the others go, it is alone", where, s.name, o.name)
			}
		}
	}
	return clients
}

// natsURLs parses a relay's --nats value into host:port addresses.
func natsURLs(t *testing.T, where, value string) []string {
	t.Helper()
	var out []string
	for _, s := range strings.Split(value, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Scheme != "nats" && u.Scheme != "tls" || u.Port() == "" {
			t.Errorf("%s: --nats %q: %q is no nats://HOST:PORT", where, value, s)
			continue
		}
		out = append(out, u.Host)
	}
	return out
}
