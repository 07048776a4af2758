package deploy

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestReadmeSeveralNodes checks the commands of the README's "Several
// nodes" section, which people paste as they are: the compose file exists,
// the nats-server lines form one JetStream cluster (flags read from
// nats-server itself), and the relay lines each join every one of its
// servers with replicas 3, under a node name, ports and admin socket of
// their own.
func TestReadmeSeveralNodes(t *testing.T) {
	readme := string(readFile(t, "../README.md"))
	start := strings.Index(readme, "\n## Several nodes\n")
	if start < 0 || start < strings.Index(readme, "\n## One node, durable\n") {
		t.Fatal(`README.md: no "## Several nodes" section after "## One node, durable"`)
	}
	section := readme[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	if m := regexp.MustCompile(`nats-server/v2@v(\S+?)\x60`).FindStringSubmatch(section); m == nil || m[1] != natsServerVersion(t) {
		t.Errorf("README.md: installs nats-server %v, want go.mod's %s", m, natsServerVersion(t))
	}

	var lines []string
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		lines = append(lines, strings.Split(strings.TrimSpace(block[1]), "\n")...)
	}
	daemon, _ := knownFlags(t)
	known := withClusterFlags(t, "README.md", daemon)
	vars := map[string]string{}
	var servers []natsServer
	var relays []map[string]string
	composed := false
	for _, line := range lines {
		line = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), "&"))
		for k, v := range vars {
			line = strings.ReplaceAll(line, "$"+k, v)
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
		case fields[0] == "docker":
			if len(fields) < 4 || fields[1] != "compose" || fields[2] != "-f" {
				t.Fatalf("README.md: %q: want docker compose -f FILE ...", line)
			}
			if f := fields[3]; filepath.Base(f) != clusterComposeFile {
				t.Errorf("README.md: %q: want -f deploy/%s", line, clusterComposeFile)
			} else if _, err := os.Stat(filepath.Join("..", f)); err != nil {
				t.Errorf("README.md: %q: %v", line, err)
			}
			composed = true
		case fields[0] == "nats-server":
			args := natsArgs(t, "README.md "+line, fields[1:])
			u, err := url.Parse(args["cluster"])
			if err != nil {
				t.Fatalf("README.md: %q: --cluster %q", line, args["cluster"])
			}
			servers = append(servers, natsServer{name: args["server_name"], host: u.Hostname(), args: args})
		case fields[0] == "bin/relay":
			args := flagArgs(t, fields[1:])
			checkFlags(t, "README.md "+line, args, known)
			relays = append(relays, args)
		case regexp.MustCompile(`^[A-Z_]+=\S+$`).MatchString(line):
			k, v, _ := strings.Cut(line, "=")
			vars[k] = v
		default:
			t.Errorf("README.md: the test does not know the command %q", line)
		}
	}
	if !composed || len(servers) != 3 || len(relays) != 3 {
		t.Fatalf("README.md: compose %v, %d nats-server and %d bin/relay lines: want the compose command and three of each", composed, len(servers), len(relays))
	}
	clients := checkNATSCluster(t, "README.md", servers)
	sort.Strings(clients)
	seen := map[string]map[string]bool{}
	for _, r := range relays {
		got := natsURLs(t, "README.md", r["nats"])
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(clients, ",") {
			t.Errorf("README.md: relay --nats %q, want every server of the cluster %v", r["nats"], clients)
		}
		if n, _ := strconv.Atoi(r["nats-replicas"]); n != len(servers) {
			t.Errorf("README.md: relay --nats-replicas %q, want %d", r["nats-replicas"], len(servers))
		}
		if _, ok := r["data-dir"]; ok {
			t.Errorf("README.md: a relay with --nats and --data-dir, which exclude each other")
		}
		// On one host, each relay needs its own name, ports and socket.
		for _, f := range []string{"node", "listen", "metrics-listen", "admin-socket"} {
			v := r[f]
			if f == "listen" || f == "metrics-listen" {
				if _, port, err := net.SplitHostPort(v); err == nil {
					v = port
				}
			}
			if seen[f] == nil {
				seen[f] = map[string]bool{}
			}
			if v == "" || seen[f][v] {
				t.Errorf("README.md: relay --%s %q: want one of its own on each relay", f, r[f])
			}
			seen[f][v] = true
		}
	}
}
