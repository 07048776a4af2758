package deploy

import (
	"debug/elf"
	"encoding/json"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// parseDockerfile splits a Dockerfile into stages (each starting at FROM).
func parseDockerfile(t *testing.T, file string) [][]instruction {
	t.Helper()
	var stages [][]instruction
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s: %s before the first FROM", file, in.cmd)
			}
			return
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	for _, line := range strings.Split(string(readFile(t, file)), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return stages
}

// execForm decodes an exec-form (JSON array) argument list.
func execForm(t *testing.T, what, args string) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal([]byte(args), &out); err != nil || len(out) == 0 {
		t.Fatalf("%s %s: want the exec (JSON array) form: %v", what, args, err)
	}
	return out
}

// dockerImage is what the tests learn from the Dockerfile and compare
// with the compose file.
type dockerImage struct {
	uid, gid    int
	binary      string            // absolute path of the relay in the image
	cmd         map[string]string // CMD's flags
	exposed     map[string]bool   // "9999/udp", ...
	adminDir    string
	metricsPort string
}

func goVersion(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(readFile(t, "../go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return string(m[1])
}

func checkDockerfile(t *testing.T) dockerImage {
	t.Helper()
	const file = "docker/Dockerfile"
	stages := parseDockerfile(t, file)
	if len(stages) < 2 {
		t.Fatalf("%s: %d stages, want a multi-stage build", file, len(stages))
	}
	img := dockerImage{exposed: map[string]bool{}}

	// The build stage: the Go of go.mod, a static build of ./cmd/relay.
	build := stages[0]
	from := strings.Fields(build[0].args)
	if want := "golang:" + goVersion(t); from[0] != want {
		t.Errorf("%s: build stage FROM %s, want %s (go.mod's version)", file, from[0], want)
	}
	static := false
	for _, in := range build {
		if in.cmd == "RUN" && strings.Contains(in.args, "CGO_ENABLED=0") && strings.Contains(in.args, "go build") && strings.Contains(in.args, "./cmd/relay") {
			static = true
		}
	}
	if !static {
		t.Errorf("%s: no RUN CGO_ENABLED=0 go build ... ./cmd/relay in the build stage", file)
	}

	final := stages[len(stages)-1]
	base := strings.Fields(final[0].args)[0]
	if base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/static") {
		t.Errorf("%s: final image FROM %s, want distroless/static or scratch", file, base)
	}
	var copies []string
	var entrypoint, cmd, health []string
	var healthOpts string
	img.uid = -1
	for _, in := range final[1:] {
		switch in.cmd {
		case "USER":
			u, g, _ := strings.Cut(in.args, ":")
			uid, err := strconv.Atoi(u)
			if err != nil {
				t.Errorf("%s: USER %s: want a numeric uid (Kubernetes' runAsNonRoot can only check a number)", file, in.args)
			}
			img.uid, img.gid = uid, uid
			if g != "" {
				img.gid, _ = strconv.Atoi(g)
			}
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				img.exposed[strings.ToLower(p)] = true
			}
		case "COPY":
			copies = append(copies, in.args)
		case "ENTRYPOINT":
			entrypoint = execForm(t, "ENTRYPOINT", in.args)
		case "CMD":
			cmd = execForm(t, "CMD", in.args)
		case "HEALTHCHECK":
			opts, rest, ok := strings.Cut(in.args, "CMD ")
			if !ok {
				t.Fatalf("%s: HEALTHCHECK %s: want HEALTHCHECK [options] CMD [...]", file, in.args)
			}
			healthOpts, health = opts, execForm(t, "HEALTHCHECK CMD", rest)
		}
	}
	if img.uid <= 0 {
		t.Errorf("%s: final stage USER uid %d: want a non-root numeric user", file, img.uid)
	}
	for _, p := range []string{"9999/udp", "9101/tcp"} {
		if !img.exposed[p] {
			t.Errorf("%s: EXPOSE lacks %s (have %v)", file, p, img.exposed)
		}
	}
	if len(entrypoint) != 1 || !path.IsAbs(entrypoint[0]) {
		t.Fatalf("%s: ENTRYPOINT %q: want the relay binary's absolute path", file, entrypoint)
	}
	img.binary = entrypoint[0]
	copied := false
	for _, c := range copies {
		f := strings.Fields(c)
		if strings.HasPrefix(c, "--from=") && f[len(f)-1] == img.binary {
			copied = true
		}
	}
	if !copied {
		t.Errorf("%s: the final stage does not COPY --from the build stage to %s", file, img.binary)
	}

	daemonFlags, healthFlags := knownFlags(t)
	img.cmd = flagArgs(t, cmd)
	checkFlags(t, file+" CMD", img.cmd, daemonFlags)
	host, port, err := net.SplitHostPort(img.cmd["metrics-listen"])
	if err != nil || host != "0.0.0.0" || port != "9101" {
		t.Errorf("%s: CMD --metrics-listen %q: want 0.0.0.0:9101 (probes and scrapers cannot reach the container's loopback)", file, img.cmd["metrics-listen"])
	}
	img.metricsPort = port
	if _, p, _ := net.SplitHostPort(img.cmd["listen"]); p != "9999" {
		t.Errorf("%s: CMD --listen %q: want port 9999 as exposed", file, img.cmd["listen"])
	}
	// The admin socket's directory must exist and belong to USER: the
	// relay creates no directory for a path the operator chose.
	img.adminDir = path.Dir(img.cmd["admin-socket"])
	owned := false
	for _, c := range copies {
		f := strings.Fields(c)
		if f[len(f)-1] == img.adminDir && strings.Contains(c, "--chown="+strconv.Itoa(img.uid)) {
			owned = true
		}
	}
	if !owned {
		t.Errorf("%s: --admin-socket %s: no COPY --chown=%d creates %s", file, img.cmd["admin-socket"], img.uid, img.adminDir)
	}

	// HEALTHCHECK runs the relay itself, at the metrics address CMD uses.
	if len(health) < 2 || health[0] != img.binary || health[1] != "health" {
		t.Fatalf("%s: HEALTHCHECK CMD %q: want [%q, \"health\", ...]", file, health, img.binary)
	}
	hf := flagArgs(t, health[2:])
	checkFlags(t, file+" HEALTHCHECK", hf, healthFlags)
	if hf["metrics-listen"] != img.cmd["metrics-listen"] {
		t.Errorf("%s: HEALTHCHECK checks %q, CMD serves metrics on %q", file, hf["metrics-listen"], img.cmd["metrics-listen"])
	}
	if m := regexp.MustCompile(`--timeout=(\d+)s`).FindStringSubmatch(healthOpts); m == nil || atoi(m[1]) <= 2 {
		t.Errorf("%s: HEALTHCHECK %s: want --timeout=Ns above relay health's own 2s", file, healthOpts)
	}
	return img
}

func TestDockerfile(t *testing.T) {
	checkDockerfile(t)
	// The final image has no libc: the relay built as the Dockerfile
	// builds it must be a static executable.
	f, err := elf.Open(relayBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, _ := f.ImportedLibraries()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("relay built with CGO_ENABLED=0 is dynamically linked (program header %v, libraries %v)", p.Type, libs)
		}
	}
	// The build context is the repository root: everything the build
	// needs must survive the ignore file next to the Dockerfile.
	for _, pattern := range strings.Split(string(readFile(t, "docker/Dockerfile.dockerignore")), "\n") {
		p := strings.TrimSpace(pattern)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		for _, needed := range []string{"go.mod", "go.sum", "cmd", "cmd/relay", "relay", "metrics", "pool"} {
			if ok, _ := filepath.Match(p, needed); ok {
				t.Errorf("Dockerfile.dockerignore: %q excludes %s, which the build needs", p, needed)
			}
		}
	}
}

// composeVolume is a short-syntax volume: SOURCE:TARGET[:MODE].
type composeVolume struct{ source, target string }

func composeVolumes(t *testing.T, svc any) []composeVolume {
	var out []composeVolume
	for _, v := range strList(svc, "volumes") {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Fatalf("compose volume %q: want SOURCE:TARGET", v)
		}
		out = append(out, composeVolume{parts[0], parts[1]})
	}
	return out
}

// hostPath maps a file in a container of svc back to the file in deploy/
// that compose mounts there, or "" when none is mounted.
func hostPath(vols []composeVolume, inContainer string) string {
	for _, v := range vols {
		if !strings.HasPrefix(v.source, ".") {
			continue // a named volume
		}
		if inContainer == v.target {
			return filepath.Clean(filepath.FromSlash(v.source))
		}
		if rel, ok := strings.CutPrefix(inContainer, v.target+"/"); ok {
			return filepath.Join(filepath.FromSlash(v.source), filepath.FromSlash(rel))
		}
	}
	return ""
}

func TestCompose(t *testing.T) {
	const file = "compose.yaml"
	img := checkDockerfile(t)
	c := composeFile(t, file)
	relay, prom, graf := get(c, "services", "relay"), get(c, "services", "prometheus"), get(c, "services", "grafana")
	if relay == nil || prom == nil || graf == nil {
		t.Fatalf("%s: want services relay, prometheus and grafana; have %v", file, sortedKeys(get(c, "services").(map[string]any)))
	}
	ports := checkComposeRelay(t, file, "relay", relay, img)
	if ports["9999/udp"] != "9999" || ports[img.metricsPort+"/tcp"] == "" {
		t.Errorf("%s: relay publishes %v, want 9999/udp on 9999 and %s", file, strList(relay, "ports"), img.metricsPort)
	}
	// Prometheus scrapes the relay service on the metrics port.
	targets := composePromTargets(t, file, prom)
	if want := "relay:" + img.metricsPort; !targets[want] || len(targets) != 1 {
		t.Errorf("%s: prometheus scrapes %v, want only %s", file, sortedKeys(targets), want)
	}
	checkComposeGrafana(t, file, graf)
}

// composeFile reads a compose file of deploy/ and checks what every
// service's volumes name: bind mounts' sources exist (paths are relative
// to deploy/), named volumes are declared.
func composeFile(t *testing.T, file string) map[string]any {
	t.Helper()
	docs := yamlDocs(t, file)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents", file, len(docs))
	}
	c := docs[0]
	services, _ := get(c, "services").(map[string]any)
	for _, name := range sortedKeys(services) {
		for _, v := range composeVolumes(t, services[name]) {
			if strings.HasPrefix(v.source, ".") {
				if _, err := os.Stat(filepath.FromSlash(v.source)); err != nil {
					t.Errorf("%s: service %s mounts %s, which does not exist", file, name, v.source)
				}
			} else if vols, _ := get(c, "volumes").(map[string]any); !hasKey(vols, v.source) {
				t.Errorf("%s: service %s uses volume %s, not declared under volumes", file, name, v.source)
			}
		}
		for _, dep := range composeDependsOn(services[name]) {
			if services[dep] == nil {
				t.Errorf("%s: service %s depends on %s, which is no service", file, name, dep)
			}
		}
	}
	return c
}

// composeDependsOn lists the services a service waits for, in the short
// (a list) or long (a map of conditions) syntax.
func composeDependsOn(svc any) []string {
	if m, ok := get(svc, "depends_on").(map[string]any); ok {
		return sortedKeys(m)
	}
	return strList(svc, "depends_on")
}

// checkComposeRelay checks a relay service: built from our Dockerfile,
// with the image's CMD and HEALTHCHECK (compose must not replace them), and
// returns its published ports, container port/protocol -> host port.
func checkComposeRelay(t *testing.T, file, name string, relay any, img dockerImage) map[string]string {
	t.Helper()
	ctx := str(relay, "build", "context")
	if df := filepath.Join(ctx, str(relay, "build", "dockerfile")); df != filepath.Join("..", "deploy", "docker", "Dockerfile") {
		t.Errorf("%s: %s builds %s, want deploy/docker/Dockerfile from the repository root", file, name, df)
	}
	for _, k := range []string{"command", "entrypoint", "healthcheck"} {
		if get(relay, k) != nil {
			t.Errorf("%s: %s overrides the image's %s; the static checks of the Dockerfile would not hold", file, name, k)
		}
	}
	ports := map[string]string{}
	for _, p := range strList(relay, "ports") {
		parts := strings.Split(p, ":")
		target := parts[len(parts)-1]
		if !strings.Contains(target, "/") {
			target += "/tcp"
		}
		host := "" // none: a port docker picks
		if len(parts) > 1 {
			host = parts[len(parts)-2]
		}
		ports[target] = host
	}
	// A read-only root needs the admin socket's directory as tmpfs owned
	// by the image's user.
	tmpfsOK := false
	for _, m := range strList(relay, "tmpfs") {
		if strings.HasPrefix(m, img.adminDir+":") && strings.Contains(m, "uid="+strconv.Itoa(img.uid)) {
			tmpfsOK = true
		}
	}
	if get(relay, "read_only") == true && !tmpfsOK {
		t.Errorf("%s: %s is read_only but %s is no tmpfs owned by uid %d", file, name, img.adminDir, img.uid)
	}
	return ports
}

// composePromTargets returns what the prometheus service scrapes: its
// --config.file must be a file mounted from deploy/.
func composePromTargets(t *testing.T, file string, prom any) map[string]bool {
	t.Helper()
	var promConfig string
	for _, a := range strList(prom, "command") {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			promConfig = hostPath(composeVolumes(t, prom), v)
		}
	}
	if promConfig == "" {
		t.Fatalf("%s: prometheus's --config.file is not a file mounted from deploy/", file)
	}
	targets := map[string]bool{}
	for _, sc := range list(yamlDocs(t, promConfig)[0], "scrape_configs") {
		if str(sc, "job_name") != "chatrelay" {
			t.Errorf("%s: %s scrapes job %q; the alerts and the dashboard expect job=\"chatrelay\"", file, promConfig, str(sc, "job_name"))
		}
		for _, st := range list(sc, "static_configs") {
			for _, tg := range strList(st, "targets") {
				targets[tg] = true
			}
		}
	}
	return targets
}

// checkComposeGrafana: provisioning mounted; a dashboard provider whose
// folder has our dashboard mounted; a data source pointing at the
// prometheus service.
func checkComposeGrafana(t *testing.T, file string, graf any) {
	t.Helper()
	gv := composeVolumes(t, graf)
	prov := hostPath(gv, "/etc/grafana/provisioning")
	if prov == "" {
		t.Fatalf("%s: grafana has no /etc/grafana/provisioning mounted from deploy/", file)
	}
	providers, _ := filepath.Glob(filepath.Join(prov, "dashboards", "*.yaml"))
	found := false
	for _, f := range providers {
		for _, p := range list(yamlDocs(t, f)[0], "providers") {
			dir := str(p, "options", "path")
			if hostPath(gv, dir+"/relay-dashboard.json") == filepath.Join("grafana", "relay-dashboard.json") {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("%s: no dashboard provider under %s/dashboards reads a folder where grafana/relay-dashboard.json is mounted", file, prov)
	}
	sources, _ := filepath.Glob(filepath.Join(prov, "datasources", "*.yaml"))
	dsOK := false
	for _, f := range sources {
		for _, d := range list(yamlDocs(t, f)[0], "datasources") {
			if str(d, "type") == "prometheus" && str(d, "url") == "http://prometheus:9090" {
				dsOK = true
			}
		}
	}
	if !dsOK {
		t.Errorf("%s: no provisioned prometheus data source at http://prometheus:9090", file)
	}
}

func hasKey(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
