package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

const clusterComposeFile = "compose-cluster.yaml"

// TestComposeCluster checks deploy/compose-cluster.yaml as docker compose
// would run it: three relays from our image, each on every server of a
// three-server NATS JetStream cluster with replicas 3, under names and host
// ports of their own; the NATS servers routed to each other, each with its
// own volume; Prometheus scraping every relay; Grafana as in compose.yaml.
func TestComposeCluster(t *testing.T) {
	const file = clusterComposeFile
	img := checkDockerfile(t)
	daemonFlags, _ := knownFlags(t)
	known := withClusterFlags(t, file, daemonFlags)
	c := composeFile(t, file)
	services, _ := get(c, "services").(map[string]any)
	if services["prometheus"] == nil || services["grafana"] == nil {
		t.Fatalf("%s: want services prometheus and grafana; have %v", file, sortedKeys(services))
	}

	// The NATS servers: the image of the nats-server the relay is tested
	// against, one cluster, a named volume each for the store.
	var nats []natsServer
	var relays []string
	for _, name := range sortedKeys(services) {
		svc := services[name]
		image := str(svc, "image")
		switch {
		case get(svc, "build") != nil:
			relays = append(relays, name)
		case strings.HasPrefix(image, "nats:"):
			if want := "nats:" + natsServerVersion(t); image != want && !strings.HasPrefix(image, want+"-") {
				t.Errorf("%s: %s runs %s, want %s (go.mod's nats-server, which the relay is tested against)", file, name, image, want)
			}
			s := natsServer{name: name, host: name, args: natsArgs(t, file+" "+name, strList(svc, "command"))}
			nats = append(nats, s)
			stored := false
			for _, v := range composeVolumes(t, svc) {
				if v.target == s.args["store_dir"] && !strings.HasPrefix(v.source, ".") {
					stored = true
				}
			}
			if !stored {
				t.Errorf("%s: %s stores JetStream in %q, which is no named volume: `docker compose down` and up would lose every room", file, name, s.args["store_dir"])
			}
			if hc := strings.Join(strList(svc, "healthcheck", "test"), " "); !strings.Contains(hc, ":"+s.args["http_port"]+"/healthz") || s.args["http_port"] == "" {
				t.Errorf("%s: %s's healthcheck %q does not ask /healthz on its --http_port %q", file, name, hc, s.args["http_port"])
			}
		}
	}
	if len(nats) != 3 || len(relays) != 3 {
		t.Fatalf("%s: %d NATS servers and %d relays (%v), want 3 and 3", file, len(nats), len(relays), relays)
	}
	clients := checkNATSCluster(t, file, nats)
	sort.Strings(clients)
	storeVolumes := map[string]string{}
	for _, s := range nats {
		for _, v := range composeVolumes(t, services[s.host]) {
			if v.target == s.args["store_dir"] {
				if other, dup := storeVolumes[v.source]; dup {
					t.Errorf("%s: %s and %s share the volume %s: two JetStream servers in one store", file, other, s.host, v.source)
				}
				storeVolumes[v.source] = s.host
			}
		}
	}

	// The relays: our image unchanged, the cluster's settings as RELAY_*
	// variables (the relay reads each flag from RELAY_ and its name in
	// upper snake case), distinct nodes and host ports.
	nodes, udpPorts, metricsPorts := map[string]string{}, map[string]string{}, map[string]string{}
	for _, name := range relays {
		relay := services[name]
		where := file + " " + name
		ports := checkComposeRelay(t, file, name, relay, img)
		env := stringMap(relay, "environment")
		if env == nil {
			t.Fatalf("%s: environment: want a map of strings (quote numbers)", where)
		}
		flags := map[string]string{}
		for k, v := range env {
			f, ok := envFlag(k)
			if !ok {
				continue
			}
			if !known[f] {
				t.Errorf("%s: %s sets --%s, which is no flag of the relay", where, k, f)
			}
			flags[f] = v
		}
		if _, ok := flags["data-dir"]; ok {
			t.Errorf("%s: sets data-dir and nats: the relay refuses both (one embedded node, or the cluster)", where)
		}
		got := natsURLs(t, where, flags["nats"])
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(clients, ",") {
			t.Errorf("%s: --nats %q reaches %v, want every NATS server of the cluster %v, so it reconnects to another when one goes", where, flags["nats"], got, clients)
		}
		if r, err := strconv.Atoi(flags["nats-replicas"]); err != nil || r != len(nats) {
			t.Errorf("%s: --nats-replicas %q, want %d: a replica of each room and of the names on every NATS server, so any one may go", where, flags["nats-replicas"], len(nats))
		}
		node := flags["node"]
		if node == "" {
			t.Errorf("%s: no RELAY_NODE: the node name would be the container's random hostname, new at every recreate", where)
		} else if other, dup := nodes[node]; dup {
			t.Errorf("%s: node %s is also %s's: two relays under one name in the cluster", where, node, other)
		}
		nodes[node] = name
		for what, m := range map[string]map[string]string{"9999/udp": udpPorts, img.metricsPort + "/tcp": metricsPorts} {
			host := ports[what]
			if host == "" {
				t.Errorf("%s: publishes %v, want %s on a fixed host port", where, strList(relay, "ports"), what)
			} else if other, dup := m[host]; dup {
				t.Errorf("%s: host port %s for %s is also %s's", where, host, what, other)
			}
			m[host] = name
		}
		deps := map[string]bool{}
		for _, d := range composeDependsOn(relay) {
			deps[d] = true
		}
		for _, s := range nats {
			if !deps[s.host] || str(relay, "depends_on", s.host, "condition") != "service_healthy" {
				t.Errorf("%s: does not wait for %s to be healthy (depends_on condition service_healthy)", where, s.host)
			}
		}
	}

	// Prometheus scrapes every relay, and only relays.
	targets := composePromTargets(t, file, services["prometheus"])
	want := map[string]bool{}
	for _, r := range relays {
		want[r+":"+img.metricsPort] = true
	}
	if strings.Join(sortedKeys(targets), " ") != strings.Join(sortedKeys(want), " ") {
		t.Errorf("%s: prometheus scrapes %v, want every relay: %v", file, sortedKeys(targets), sortedKeys(want))
	}
	checkComposeGrafana(t, file, services["grafana"])
	if str(c, "name") == str(composeFile(t, "compose.yaml"), "name") {
		t.Errorf("%s: project name %q is compose.yaml's: the two stacks would share containers and volumes", file, str(c, "name"))
	}
}

// TestComposeConfig runs `docker compose config` on each compose file of
// deploy/ where Docker's Compose v2 is installed: it resolves anchors,
// merges and paths as the engine would. Debian 12 packages only Compose
// v1 (docker-compose 1.29), which rejects the Compose Specification these
// files use (a top-level name), so this test skips without Compose v2 even
// under CHATRELAY_REQUIRE_TOOLS=1: CI cannot install it.
func TestComposeConfig(t *testing.T) {
	compose := composeV2(t)
	for _, f := range []string{"compose.yaml", clusterComposeFile} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, compose[0], append(compose[1:], "-f", f, "config", "--quiet")...)
		cmd.Stdout, cmd.Stderr = &out, &out
		// Resolve nothing from the caller's environment or a .env file.
		cmd.Env = append(os.Environ(), "COMPOSE_PROJECT_NAME=", "COMPOSE_FILE=")
		if err := cmd.Run(); err != nil {
			t.Errorf("%s config %s: %v\n%s", strings.Join(compose, " "), f, err, out.String())
		}
		cancel()
	}
}

// composeV2 returns the command of Docker Compose v2 (`docker compose`, or
// a v2 `docker-compose`), or skips.
func composeV2(t *testing.T) []string {
	t.Helper()
	for _, cmd := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		if _, err := exec.LookPath(cmd[0]); err != nil {
			continue
		}
		out, err := exec.Command(cmd[0], append(cmd[1:], "version", "--short")...).Output()
		if v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v"); err == nil && strings.HasPrefix(v, "2.") {
			return cmd
		}
	}
	t.Skip("Docker Compose v2 not found (`docker compose version`): the compose files are checked statically only")
	return nil
}
