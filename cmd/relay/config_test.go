package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"go.yaml.in/yaml/v3"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// envMap is an environment for loadConfig that leaves the process's alone.
type envMap map[string]string

func (e envMap) lookup(name string) (string, bool) { v, ok := e[name]; return v, ok }

// writeFile writes a config file in a fresh directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, args []string, env envMap) (*config, error) {
	t.Helper()
	return loadConfig(flag.NewFlagSet("relay", flag.ContinueOnError), args, io.Discard, env.lookup)
}

func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, "relay.yaml", "# a comment\nmax-members: 500\nlang: zh\nmetrics-listen: 127.0.0.1:9200\nflood: off\nclassic-idle: 2h\n")
	other := writeFile(t, "other.yaml", "max-members: 7\n")
	tests := []struct {
		name  string
		args  []string
		env   envMap
		key   string
		value string
		src   source
		where string
	}{
		{"default", nil, nil, "max-members", "10000", fromDefault, ""},
		{"file over default", []string{"--config", file}, nil, "max-members", "500", fromFile, file + ":2"},
		{"file, other key", []string{"--config", file}, nil, "lang", "zh", fromFile, file + ":3"},
		{"env over file", []string{"--config", file}, envMap{"RELAY_MAX_MEMBERS": "600"}, "max-members", "600", fromEnv, "RELAY_MAX_MEMBERS"},
		{"flag over env over file", []string{"--config", file, "--max-members", "700"}, envMap{"RELAY_MAX_MEMBERS": "600"}, "max-members", "700", fromFlag, "--max-members"},
		{"env names the file", nil, envMap{"RELAY_CONFIG": file}, "lang", "zh", fromFile, file + ":3"},
		{"--config over RELAY_CONFIG", []string{"--config", other}, envMap{"RELAY_CONFIG": file}, "max-members", "7", fromFile, other + ":1"},
		{"empty env value disables metrics", []string{"--config", file}, envMap{"RELAY_METRICS_LISTEN": ""}, "metrics-listen", "", fromEnv, "RELAY_METRICS_LISTEN"},
		{"env with dashes as underscores", nil, envMap{"RELAY_FLOOD_CHAT_RATE": "2.5"}, "flood-chat-rate", "2.5", fromEnv, "RELAY_FLOOD_CHAT_RATE"},
		{"unrelated RELAY_ variables are ignored", nil, envMap{"RELAY_PORT": "udp://10.0.0.1:9999", "RELAY_SERVICE_HOST": "10.0.0.1"}, "listen", ":9999", fromDefault, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			s, ok := c.lookup(tt.key)
			if !ok || s.value != tt.value || s.src != tt.src || s.where != tt.where {
				t.Fatalf("%s = %+v, want %q from %v at %q", tt.key, s, tt.value, tt.src, tt.where)
			}
		})
	}
	c, err := load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o := c.opts; o.MaxMembers != 500 || o.Lang != "zh" || o.Flood != "off" || o.ClassicIdle != 2*time.Hour || o.MetricsListen != "127.0.0.1:9200" {
		t.Fatalf("options from the file: %+v", o)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		file string // "" for no file
		args []string
		env  envMap
		want []string // substrings of the error, in order
	}{
		{"typo'd key", "lang: zh\nmax-membrs: 5\n", nil, nil, []string{`relay.yaml:2: unknown key "max-membrs" (did you mean "max-members"?)`}},
		{"unknown key without a near name", "colour: blue\n", nil, nil, []string{`relay.yaml:1: unknown key "colour"`}},
		{"config is not a file key", "config: other.yaml\n", nil, nil, []string{`relay.yaml:1: unknown key "config"`}},
		{"bad number", "max-members: lots\n", nil, nil, []string{`relay.yaml:1: max-members: invalid value "lots": want a whole number`}},
		{"bad duration", "v2-timeout: 15\n", nil, nil, []string{`relay.yaml:1: v2-timeout: invalid value "15": want a duration`}},
		{"bad bool", "per-ip-loopback: yes\n", nil, nil, []string{`relay.yaml:1: per-ip-loopback: invalid value "yes": want true or false`}},
		{"list", "lang:\n  - zh\n", nil, nil, []string{"relay.yaml:1: lang: want one value, not a list"}},
		{"nested map", "flood:\n  chat-rate: 5\n", nil, nil, []string{"relay.yaml:1: flood: want one value, not a nested mapping"}},
		{"no value", "listen:\n", nil, nil, []string{`relay.yaml:1: listen has no value (write "" for an empty one)`}},
		{"twice", "lang: zh\nworkers: 4\nlang: en\n", nil, nil, []string{"relay.yaml:3: lang is set twice (first on line 1)"}},
		{"all errors, in line order", "workers: x\nmax-membrs: 5\nlang: [zh]\n", nil, nil,
			[]string{"relay.yaml:1: workers", "\n", `relay.yaml:2: unknown key "max-membrs"`, "\n", "relay.yaml:3: lang"}},
		{"yaml syntax", "lang: zh\n  workers: 4\n", nil, nil, []string{"relay.yaml:2: mapping values are not allowed"}},
		{"not a mapping", "- lang\n- zh\n", nil, nil, []string{"relay.yaml:1: want settings as key: value lines"}},
		{"two documents", "lang: zh\n---\nlang: en\n", nil, nil, []string{"relay.yaml:2: a second YAML document"}},
		{"out of range value names the line", "workers: 4\nmax-members: 0\n", nil, nil, []string{"relay.yaml:2: max-members 0: must be at least 1"}},
		{"bad address names the line", "\n\nmetrics-listen: 9101\n", nil, nil, []string{`relay.yaml:3: metrics-listen "9101": want HOST:PORT`}},
		{"bad language", "lang: fr\n", nil, nil, []string{`relay.yaml:1: lang "fr": want en or zh`}},
		{"bad prefix", "limit-exempt: 10.0.0.0/33\n", nil, nil, []string{`relay.yaml:1: limit-exempt "10.0.0.0/33"`}},
		{"a bad file value is an error even where a flag wins", "max-members: lots\n", []string{"--max-members", "5"}, nil, []string{`relay.yaml:1: max-members: invalid value "lots"`}},
		{"bad variable", "", nil, envMap{"RELAY_WORKERS": "many"}, []string{`RELAY_WORKERS="many": invalid value for workers: want a whole number`}},
		{"out of range variable", "", nil, envMap{"RELAY_LANG": "fr"}, []string{`RELAY_LANG: lang "fr": want en or zh`}},
		{"out of range flag", "", []string{"--max-members", "0"}, nil, []string{"--max-members 0: must be at least 1"}},
		{"rooms not a list", "rooms: dev\n", nil, nil, []string{"relay.yaml:1: rooms: want a list of rooms"}},
		{"room without a good name", "rooms:\n  - topic: hi\n  - name: \"a b\"\n", nil, nil,
			[]string{`relay.yaml:2: rooms: name ""`, "\n", `relay.yaml:3: rooms: name "a b"`}},
		{"room twice by key", "rooms:\n  - name: Dev\n  - name: ＤＥＶ\n", nil, nil, []string{"relay.yaml:3: rooms: ＤＥＶ is listed twice (first on line 2)"}},
		{"room with an unknown key", "rooms:\n  - name: dev\n    password: x\n", nil, nil, []string{`relay.yaml:3: rooms: unknown key "password"`}},
		{"room with a bad limit", "rooms:\n  - name: dev\n    limit: -1\n", nil, nil, []string{`relay.yaml:3: rooms: limit "-1"`}},
		{"missing file", "", []string{"--config", "/nonexistent/relay.yaml"}, nil, []string{"config file /nonexistent/relay.yaml: no such file or directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
				// A relative name, as an operator types it: errors show it.
				t.Chdir(dir)
				args = append([]string{"--config", "relay.yaml"}, args...)
			}
			c, err := load(t, args, tt.env)
			if err == nil {
				t.Fatalf("accepted: %+v", c.opts)
			}
			msg := err.Error()
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q lacks %q (in order)", msg, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestConfigRooms(t *testing.T) {
	file := "rooms:\n  - name: 课堂\n    topic: 今天讲网络\n  - name: vault\n    key: s3cret\n    limit: 10\n"
	c, err := load(t, []string{"--config", writeFile(t, "relay.yaml", file)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []relay.RoomSettings{{Name: "课堂", Topic: "今天讲网络"}, {Name: "vault", Key: "s3cret", Limit: 10}}
	if !reflect.DeepEqual(c.opts.Rooms, want) {
		t.Fatalf("rooms %+v, want %+v", c.opts.Rooms, want)
	}
}

func TestConfigEmptyFileMeansDefaults(t *testing.T) {
	for _, content := range []string{"", "# only comments\n", "~\n", "---\n"} {
		c, err := load(t, []string{"--config", writeFile(t, "relay.yaml", content)}, nil)
		if err != nil {
			t.Fatalf("%q: %v", content, err)
		}
		if !reflect.DeepEqual(c.opts, func() Options { o := defaultOptions(); o.Config = c.opts.Config; return o }()) {
			t.Fatalf("%q: options %+v are not the defaults", content, c.opts)
		}
	}
}

// TestEveryFlagIsAKeyAndAVariable derives nothing by hand: each flag, a
// flag added by later work too, is a file key and a RELAY_* variable.
func TestEveryFlagIsAKeyAndAVariable(t *testing.T) {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	o := defaultOptions()
	defineFlags(fs, &o)
	var file strings.Builder
	env := envMap{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == configKey {
			return
		}
		v := f.DefValue
		if f.Name == "admin-socket" {
			v = "/tmp/x.sock"
		}
		file.WriteString(f.Name + ": " + yamlQuote(v) + "\n")
		env[envName(f.Name)] = v
	})
	path := writeFile(t, "all.yaml", file.String())
	for _, tc := range []struct {
		name string
		env  envMap
		src  source
	}{{"file", nil, fromFile}, {"env", env, fromEnv}} {
		c, err := load(t, []string{"--config", path}, tc.env)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(c.settings) != strings.Count(file.String(), "\n") {
			t.Fatalf("%s: %d settings, want one per flag", tc.name, len(c.settings))
		}
		for _, s := range c.settings {
			if s.src != tc.src {
				t.Errorf("%s: %s came from %v", tc.name, s.key, s.src)
			}
		}
	}

	// A flag defined later (say --future-knob) is a key and a variable at once.
	knob := func(args []string, env envMap) (int, error) {
		fs := flag.NewFlagSet("relay", flag.ContinueOnError)
		n := fs.Int("future-knob", 1, "a flag added after this test")
		_, err := loadConfig(fs, args, io.Discard, env.lookup)
		return *n, err
	}
	if n, err := knob([]string{"--config", writeFile(t, "r.yaml", "future-knob: 4\n")}, nil); err != nil || n != 4 {
		t.Fatalf("future-knob from the file: %d, %v", n, err)
	}
	if n, err := knob(nil, envMap{"RELAY_FUTURE_KNOB": "3"}); err != nil || n != 3 {
		t.Fatalf("readers from RELAY_FUTURE_KNOB: %d, %v", n, err)
	}
	if n, err := knob([]string{"--config", writeFile(t, "r.yaml", "future-knob: 4\n"), "--future-knob", "2"}, envMap{"RELAY_FUTURE_KNOB": "3"}); err != nil || n != 2 {
		t.Fatalf("--future-knob over RELAY_FUTURE_KNOB over the file: %d, %v", n, err)
	}
}

func yamlQuote(s string) string {
	b, _ := yaml.Marshal(s)
	return strings.TrimSpace(string(b))
}

// checkCLI runs `relay config check` as a user would.
func checkCLI(t *testing.T, env envMap, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runEnv(context.Background(), append([]string{"config"}, args...), &out, &errb, env.lookup)
	return out.String(), errb.String(), code
}

const deployExample = "../../deploy/relay.yaml"

// TestDeployExample keeps deploy/relay.yaml from going stale: it passes
// `relay config check`, sets every flag (and nothing else) to its default,
// and marks exactly the keys a reload applies live with [live].
func TestDeployExample(t *testing.T) {
	out, errs, code := checkCLI(t, nil, "check", deployExample)
	if code != 0 {
		t.Fatalf("relay config check %s: exit %d\n%s", deployExample, code, errs)
	}
	data, err := os.ReadFile(deployExample)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	inFile := map[string]*yaml.Node{}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		inFile[root.Content[i].Value] = root.Content[i+1]
	}
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	o := defaultOptions()
	defineFlags(fs, &o)
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == configKey {
			return
		}
		v, ok := inFile[f.Name]
		if !ok {
			t.Errorf("%s lacks %s", deployExample, f.Name)
			return
		}
		delete(inFile, f.Name)
		if !strings.Contains(out, "\n"+f.Name+": ") {
			t.Errorf("config check output lacks %s", f.Name)
		}
		if strings.TrimSpace(strings.TrimPrefix(v.LineComment, "#")) == "" {
			t.Errorf("%s: %s has no comment", deployExample, f.Name)
		}
		if live := strings.Contains(v.LineComment, "[live]"); live != liveKeys[f.Name] {
			t.Errorf("%s: %s is marked [live]=%v, but a reload applies it live=%v", deployExample, f.Name, live, liveKeys[f.Name])
		}
		if f.Name == "admin-socket" { // its default depends on the user
			return
		}
		// Compare as the flag reads it: 1h and 1h0m0s are the same.
		spare := flag.NewFlagSet("", flag.ContinueOnError)
		so := defaultOptions()
		defineFlags(spare, &so)
		if err := spare.Set(f.Name, v.Value); err != nil || spare.Lookup(f.Name).Value.String() != f.DefValue {
			t.Errorf("%s: %s: %s, but the default is %s", deployExample, f.Name, v.Value, f.DefValue)
		}
	})
	for k := range inFile {
		t.Errorf("%s sets %s, which is no flag", deployExample, k)
	}
}

func TestConfigCheckTypoFails(t *testing.T) {
	data, err := os.ReadFile(deployExample)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "\nmax-members:", "\nmax-membrs:", 1)
	lines := strings.Split(bad, "\n")
	line := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "max-membrs:") {
			line = i + 1
		}
	}
	path := writeFile(t, "relay.yaml", bad)
	out, errs, code := checkCLI(t, nil, "check", path)
	want := "relay config check: " + path + ":" + strconv.Itoa(line) + `: unknown key "max-membrs" (did you mean "max-members"?)` + "\n"
	if code != 1 || errs != want || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q, want exit 1 and %q", code, out, errs, want)
	}
}

func TestConfigCheckUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"check"}, {"check", "a.yaml", "b.yaml"}, {"lint", "a.yaml"}, {"check", "--lang"}} {
		if _, errs, code := checkCLI(t, nil, args...); code != 2 || !strings.Contains(errs, "usage: relay config check FILE") {
			t.Errorf("relay config %q: exit %d, %q; want 2 and the usage", args, code, errs)
		}
	}
}

// TestConfigCheckOutputReadsBack pastes the printed configuration back as
// a file: it is valid and means the same.
func TestConfigCheckOutputReadsBack(t *testing.T) {
	path := writeFile(t, "relay.yaml", "lang: zh\nmax-members: 42\nmetrics-listen: \"\"\nlimit-exempt: \"\"\nflood: off\nv2-timeout: 1m30s\nflood-chat-rate: 2.5\n")
	env := envMap{"RELAY_CLASSIC": "off", "RELAY_ADMIN_SOCKET": "/tmp/a b/admin.sock"}
	out, errs, code := checkCLI(t, env, "check", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, w := range []string{
		"max-members: 42 # file " + path + ":2\n",
		`classic: "off" # env RELAY_CLASSIC` + "\n",
		"workers: 16 # default\n",
		`metrics-listen: "" # file ` + path + ":3\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	first, err := load(t, []string{"--config", path}, env)
	if err != nil {
		t.Fatal(err)
	}
	again, err := load(t, []string{"--config", writeFile(t, "again.yaml", out)}, nil)
	if err != nil {
		t.Fatalf("the printed configuration does not read back: %v\n%s", err, out)
	}
	again.opts.Config = first.opts.Config
	if !reflect.DeepEqual(first.opts, again.opts) {
		t.Fatalf("read back differs:\n%+v\n%+v", first.opts, again.opts)
	}
}

func TestLiveKeysMatchLiveSettings(t *testing.T) {
	// Another valid value for each live key: changing it changes what a
	// reload gives the relay (log-level goes to the logger instead).
	other := map[string]string{
		"max-members": "5", "max-per-ip": "3", "per-ip-loopback": "true", "lang": "zh",
		"v2-timeout": "30s", "classic-idle": "2h", "flood": "off", "flood-chat-rate": "5",
		"flood-chat-burst": "7", "flood-datagram-rate": "9", "flood-datagram-burst": "11",
		"limit-exempt": "10.0.0.0/8", "log-level": "debug",
	}
	base, err := liveOf(defaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	for key := range liveKeys {
		v, ok := other[key]
		if !ok {
			t.Errorf("live key %s: add another value for it to this test", key)
			continue
		}
		fs := flag.NewFlagSet("", flag.ContinueOnError)
		o := defaultOptions()
		defineFlags(fs, &o)
		if err := fs.Set(key, v); err != nil {
			t.Errorf("live key %s is no flag: %v", key, err)
			continue
		}
		if key == "log-level" {
			continue
		}
		l, err := liveOf(o)
		if err != nil {
			t.Fatalf("%s=%s: %v", key, v, err)
		}
		if reflect.DeepEqual(l, base) {
			t.Errorf("live key %s=%s does not change the relay's live settings", key, v)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"lang: zh\nmax-members: 5\n", "a: [1, 2]\n", "x: &a 1\ny: *a\n", "- 1\n", "{lang: zh}", "lang: !!binary aGk=\n",
		"<<: {lang: zh}\n", "? [a]\n: b\n", "---\n...\n---\n", "\xff\xfe", "lang: \"\\u0000\"\n",
	} {
		f.Add([]byte(s))
	}
	known := func(key string) bool { return key == "lang" || key == "max-members" }
	hint := func(string) string { return "" }
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := parseConfig("f.yaml", data, known, hint)
		if err != nil && !strings.HasPrefix(err.Error(), "f.yaml") {
			t.Fatalf("error does not name the file: %v", err)
		}
		for _, s := range out {
			if !known(s.key) || s.line < 1 {
				t.Fatalf("setting %+v", s)
			}
		}
	})
}

// reloading is a relay started as run starts it, from a config file, that
// reloads its configuration on each signal the test sends (run sends
// SIGHUP's). Its logs are kept for assertions.
type reloading struct {
	*daemon
	hup  chan os.Signal
	logs *observer.ObservedLogs
	path string
}

func startReloading(t *testing.T, file string, args []string, env envMap) *reloading {
	t.Helper()
	r := &reloading{hup: make(chan os.Signal, 1), path: writeFile(t, "relay.yaml", file)}
	args = append([]string{"--config", r.path}, args...)
	c, err := load(t, args, env)
	if err != nil {
		t.Fatal(err)
	}
	lvl, err := parseLevel(c.opts.LogLevel)
	if err != nil {
		t.Fatal(err)
	}
	level := zap.NewAtomicLevelAt(lvl)
	var core zapcore.Core
	core, r.logs = observer.New(level)
	rl := &reloader{signals: r.hup, level: level, current: c, load: func() (*config, error) {
		return loadConfig(flag.NewFlagSet("relay", flag.ContinueOnError), args, io.Discard, env.lookup)
	}}
	r.daemon = startWith(t, func(ctx context.Context, onReady func(listeners)) error {
		return serveReloading(ctx, c.opts, zap.New(core), onReady, rl)
	})
	return r
}

// reloadWith rewrites the config file, signals a reload and waits until the
// relay has handled it, successfully or not.
func (r *reloading) reloadWith(t *testing.T, content string) {
	t.Helper()
	handled := func() int {
		return r.logs.FilterMessage("reloaded").Len() + r.logs.FilterMessage("reload failed: the running settings stay").Len()
	}
	before := handled()
	if err := os.WriteFile(r.path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	r.hup <- syscall.SIGHUP
	deadline := time.Now().Add(10 * time.Second)
	for handled() == before {
		if time.Now().After(deadline) {
			t.Fatal("the relay did not handle the reload")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// refused logs in name from a new address and expects the refusal reason.
func (d *daemon) refused(t *testing.T, name, reason string) {
	t.Helper()
	c, err := net.DialUDP("udp", nil, d.l.UDP.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := &member{t: t, c: c}
	m.send("L " + name)
	m.expect(reason)
}

func (d *daemon) whoCount(t *testing.T) int {
	t.Helper()
	out, errs, code := adminCLI(t, d.l.Admin, "who")
	if code != 0 {
		t.Fatalf("who: exit %d, %s", code, errs)
	}
	return strings.Count(out, "\n")
}

func TestReloadAppliesLiveSettingsToLiveSessions(t *testing.T) {
	sock := shortSocketPath(t)
	base := "listen: 127.0.0.1:0\nmetrics-listen: \"\"\nadmin-socket: " + sock + "\n"
	r := startReloading(t, base+"lang: en\nmax-members: 10\nlog-level: info\nworkers: 16\n", nil, nil)
	alice := r.join(t, "alice")
	bob := r.join(t, "bob")
	alice.expect("bob joined the chat room")
	carol := r.join(t, "carol")
	alice.expect("carol joined the chat room")
	bob.expect("carol joined the chat room")
	if _, errs, code := adminCLI(t, sock, "notice", "before"); code != 0 {
		t.Fatalf("notice: %s", errs)
	}
	for _, m := range []*member{alice, bob, carol} {
		m.expect("Admin notice: before")
	}
	if n := r.logs.FilterMessage("admin notice").Len(); n != 1 {
		t.Fatalf("%d admin notices logged at info, want 1", n)
	}

	// Chinese, a room of 2 (3 are in), warnings only; the worker pool and
	// the listen address need a restart.
	r.reloadWith(t, strings.Replace(base, "127.0.0.1:0", "127.0.0.1:1", 1)+"lang: zh\nmax-members: 2\nlog-level: warn\nworkers: 4\n")
	if e := r.logs.FilterMessage("reload failed: the running settings stay").All(); len(e) != 0 {
		t.Fatalf("reload failed: %v", e[0].ContextMap())
	}
	restarts := r.logs.FilterMessage("setting needs a restart: the running value stays").All()
	got := map[string]string{}
	for _, e := range restarts {
		m := e.ContextMap()
		got[m["key"].(string)] = m["running"].(string) + " -> " + m["new"].(string)
	}
	want := map[string]string{"listen": "127.0.0.1:0 -> 127.0.0.1:1", "workers": "16 -> 4"}
	if len(restarts) != len(want) || !reflect.DeepEqual(got, want) {
		t.Fatalf("needs-a-restart lines %v, want one each for %v", got, want)
	}
	reloaded := r.logs.FilterMessage("reloaded").All()
	if c := reloaded[0].ContextMap()["changed"]; !reflect.DeepEqual(c, []any{"lang=zh", "log-level=warn", "max-members=2"}) {
		t.Fatalf("reloaded changed %v", c)
	}

	if n := r.whoCount(t); n != 3 {
		t.Fatalf("%d members after the reload, want all 3", n)
	}
	if _, errs, code := adminCLI(t, sock, "notice", "下课了"); code != 0 {
		t.Fatalf("notice: %s", errs)
	}
	for _, m := range []*member{alice, bob, carol} {
		m.expect("管理员消息: 下课了")
	}
	r.refused(t, "dave", "聊天室已满")
	alice.send("C alice 你好")
	bob.expect("alice 说: 你好")
	carol.expect("alice 说: 你好")
	if n := r.logs.FilterMessage("admin notice").Len(); n != 1 {
		t.Fatalf("log-level warn still logs admin notices at info (%d)", n)
	}

	// A bad file is reported, and the running settings stay.
	for _, bad := range []struct{ file, err string }{
		{base + "lang: en\nmax-membrs: 50\n", r.path + `:5: unknown key "max-membrs"`},
		{base + "lang: en\nmax-members: 0\n", r.path + ":5: max-members 0: must be at least 1"},
		{base + "lang: [en]\n", r.path + ":4: lang: want one value, not a list"},
	} {
		r.reloadWith(t, bad.file)
		failed := r.logs.FilterMessage("reload failed: the running settings stay").All()
		if len(failed) == 0 || failed[len(failed)-1].Level != zapcore.ErrorLevel ||
			!strings.Contains(failed[len(failed)-1].ContextMap()["error"].(string), bad.err) {
			t.Fatalf("bad file %q: want an error log naming %q, got %v", bad.file, bad.err, failed)
		}
		if _, errs, code := adminCLI(t, sock, "notice", "还在"); code != 0 {
			t.Fatalf("notice: %s", errs)
		}
		for _, m := range []*member{alice, bob, carol} {
			m.expect("管理员消息: 还在")
		}
		r.refused(t, "dave", "聊天室已满")
	}
	if n := r.whoCount(t); n != 3 {
		t.Fatalf("%d members after the bad reloads, want 3", n)
	}
}

// TestReloadFlagsAndEnvStillWin reloads a file that changes settings also
// given as a flag and a variable: those keep the flag's and variable's
// values.
func TestReloadFlagsAndEnvStillWin(t *testing.T) {
	sock := shortSocketPath(t)
	base := "listen: 127.0.0.1:0\nmetrics-listen: \"\"\nadmin-socket: " + sock + "\n"
	r := startReloading(t, base+"max-members: 5\n", []string{"--max-members", "1"}, envMap{"RELAY_LANG": "en"})
	alice := r.join(t, "alice")
	r.refused(t, "bob", "full")
	r.reloadWith(t, base+"max-members: 5\nlang: zh\nclassic-idle: 2h\n")
	if c := r.logs.FilterMessage("reloaded").All()[0].ContextMap()["changed"]; !reflect.DeepEqual(c, []any{"classic-idle=2h0m0s"}) {
		t.Fatalf("reloaded changed %v, want only classic-idle", c)
	}
	r.refused(t, "bob", "full")
	if _, errs, code := adminCLI(t, sock, "notice", "still English"); code != 0 {
		t.Fatalf("notice: %s", errs)
	}
	alice.expect("Admin notice: still English")
}

// syncBuffer is the relay's log, written by its logger while the test
// reads it.
type syncBuffer struct{ relaytest.Buffer }

// waitFor polls the buffer until re matches, and returns the match.
func (s *syncBuffer) waitFor(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := re.FindStringSubmatch(s.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %v in the relay's log:\n%s", re, s.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSIGHUPReloads sends this process a real SIGHUP while `relay --config`
// runs in it, as an operator's `systemctl reload` or `kill -HUP` does.
func TestSIGHUPReloads(t *testing.T) {
	// Keep SIGHUP from ending the test binary, whatever happens to run's
	// own registration.
	guard := make(chan os.Signal, 4)
	signal.Notify(guard, syscall.SIGHUP)
	defer signal.Stop(guard)

	sock := shortSocketPath(t)
	base := "listen: 127.0.0.1:0\nmetrics-listen: \"\"\nadmin-socket: " + sock + "\nlog-format: json\n"
	path := writeFile(t, "relay.yaml", base+"lang: en\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	code := make(chan int, 1)
	go func() { code <- runEnv(ctx, []string{"--config", path}, io.Discard, &stderr, envMap{}.lookup) }()
	m := stderr.waitFor(t, regexp.MustCompile(`"msg":"relay ready","udp":"([0-9.:]+)"`))
	ua, err := net.ResolveUDPAddr("udp", m[1])
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{l: listeners{UDP: ua, Admin: sock}}
	alice := d.join(t, "alice")

	if err := os.WriteFile(path, []byte(base+"lang: zh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	stderr.waitFor(t, regexp.MustCompile(`"msg":"reloaded".*"changed":\["lang=zh"\]`))
	if _, errs, c := adminCLI(t, sock, "notice", "信号收到了"); c != 0 {
		t.Fatalf("notice: %s", errs)
	}
	alice.expect("管理员消息: 信号收到了")
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("relay exit %d:\n%s", c, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("relay did not stop")
	}
}
