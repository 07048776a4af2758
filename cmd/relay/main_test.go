package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.Cleanup(func(int) {
			if relayBinDir != "" {
				os.RemoveAll(relayBinDir)
			}
		}),
		// ants starts its default pool when imported: IgnoreCurrent skips
		// exactly the goroutines alive before the tests, so a pool a test
		// forgot to close is still caught (naming ants' functions would
		// hide it).
		goleak.IgnoreCurrent(),
	)
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(Options) bool
		wantErr string
	}{
		{"defaults", nil, func(o Options) bool {
			return o.Listen == ":9999" && o.MetricsListen == "127.0.0.1:9101" && o.MaxMembers == 10000 &&
				o.MaxDatagram == 1024 && o.Lang == "en" && o.Workers == 16 && o.AdminSocket != ""
		}, ""},
		{"the three names scripts use", []string{"--listen", "127.0.0.1:7000", "--metrics-listen", ":9200", "--admin-socket", "/tmp/x.sock"},
			func(o Options) bool {
				return o.Listen == "127.0.0.1:7000" && o.MetricsListen == ":9200" && o.AdminSocket == "/tmp/x.sock"
			}, ""},
		{"chinese, members, pool", []string{"--lang", "zh", "--max-members", "5", "--workers", "32", "--queue", "100", "--max-datagram", "2048"},
			func(o Options) bool {
				return o.Lang == "zh" && o.MaxMembers == 5 && o.Workers == 32 && o.Queue == 100 && o.MaxDatagram == 2048
			}, ""},
		{"json logs", []string{"--log-format=json", "--log-level=debug"}, func(o Options) bool { return o.LogFormat == "json" && o.LogLevel == "debug" }, ""},
		{"flood off for a benchmark", []string{"--flood", "off", "--limit-exempt", ""}, func(o Options) bool {
			fs, err := o.floodSettings()
			return err == nil && !fs.Enabled && len(fs.Exempt) == 0
		}, ""},
		{"flood defaults", nil, func(o Options) bool {
			fs, err := o.floodSettings()
			return err == nil && fs.Enabled && fs.ChatBurst == 50 && len(fs.Exempt) == 2
		}, ""},
		{"classic off", []string{"--classic", "off", "--v2-timeout", "30s"}, func(o Options) bool { return o.Classic == "off" && o.V2Timeout == 30*time.Second }, ""},
		{"bad flood", []string{"--flood", "maybe"}, nil, "--flood"},
		{"bad exempt prefix", []string{"--limit-exempt", "10.0.0.0/33"}, nil, "--limit-exempt"},
		{"bad classic", []string{"--classic", "yes"}, nil, "--classic"},
		{"backlog beyond ring", []string{"--ring", "32", "--backlog", "64"}, nil, "--backlog"},
		{"durable history", []string{"--data-dir", "/var/lib/relay", "--history", "500", "--history-age", "720h"}, func(o Options) bool {
			return o.DataDir == "/var/lib/relay" && o.History == 500 && o.HistoryAge == 720*time.Hour
		}, ""},
		{"history defaults", nil, func(o Options) bool { return o.DataDir == "" && o.History == 10000 && o.HistoryAge == 0 }, ""},
		{"tiny history", []string{"--history", "3"}, nil, "--history"},
		{"negative history age", []string{"--history-age", "-1h"}, nil, "--history-age"},
		{"backlog beyond history", []string{"--data-dir", "/tmp/x", "--history", "16", "--backlog", "20"}, nil, "--backlog"},
		{"bad lang", []string{"--lang", "fr"}, nil, "--lang"},
		{"bad level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"bad format", []string{"--log-format", "xml"}, nil, "--log-format"},
		{"zero members", []string{"--max-members", "0"}, nil, "--max-members"},
		{"huge datagram", []string{"--max-datagram", "70000"}, nil, "--max-datagram"},
		{"zero per ip", []string{"--max-per-ip", "0"}, nil, "--max-per-ip"},
		{"stray argument", []string{"serve"}, nil, "unexpected argument"},
		{"unknown flag", []string{"--colour"}, nil, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(flag.NewFlagSet("relay", flag.ContinueOnError), tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(o) {
				t.Fatalf("options %+v", o)
			}
		})
	}
}

func TestHelpListsFlagsAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, f := range []string{"-listen", "-metrics-listen", "-admin-socket", "-max-members", "-lang", "-workers", "-queue", "-max-datagram", "-log-level", "-log-format", `(default ":9999")`, "(default 10000)"} {
		if !strings.Contains(errb.String(), f) {
			t.Errorf("--help lacks %q", f)
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "relay ") {
		t.Fatalf("version: exit %d, %q", code, out.String())
	}
}

// daemon is a relay started through serve, the way main runs it.
type daemon struct {
	l      listeners
	cancel context.CancelFunc
	done   chan error
}

func testOptions(t *testing.T) Options {
	o := defaultOptions()
	o.Listen = "127.0.0.1:0"
	o.MetricsListen = "127.0.0.1:0"
	o.AdminSocket = shortSocketPath(t)
	return o
}

// shortSocketPath returns a socket path short enough for sun_path.
func shortSocketPath(t *testing.T) string {
	dir, err := os.MkdirTemp("", "cr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "admin.sock")
}

func startDaemon(t *testing.T, o Options) *daemon {
	t.Helper()
	return startWith(t, func(ctx context.Context, onReady func(listeners)) error {
		return serve(ctx, o, zap.NewNop(), onReady)
	})
}

// startWith runs serve (or a variant of it) until the test ends, and
// returns once it is ready.
func startWith(t *testing.T, serve func(ctx context.Context, onReady func(listeners)) error) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{cancel: cancel, done: make(chan error, 1)}
	ready := make(chan listeners, 1)
	go func() { d.done <- serve(ctx, func(l listeners) { ready <- l }) }()
	select {
	case d.l = <-ready:
	case err := <-d.done:
		cancel()
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("relay did not become ready")
	}
	t.Cleanup(func() { d.stop(t) })
	return d
}

var stopOnce sync.Map

func (d *daemon) stop(t *testing.T) {
	if _, done := stopOnce.LoadOrStore(d, true); done {
		return
	}
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("relay did not stop")
	}
}

type member struct {
	t *testing.T
	c *net.UDPConn
}

func (d *daemon) join(t *testing.T, name string) *member {
	t.Helper()
	c, err := net.DialUDP("udp", nil, d.l.UDP.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := &member{t: t, c: c}
	m.send("L " + name)
	m.expect("OK")
	return m
}

func (m *member) send(s string) {
	m.t.Helper()
	if _, err := m.c.Write([]byte(s)); err != nil {
		m.t.Fatal(err)
	}
}

func (m *member) expect(want string) {
	m.t.Helper()
	buf := make([]byte, 4096)
	m.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := m.c.Read(buf)
	if err != nil {
		m.t.Fatalf("waiting for %q: %v", want, err)
	}
	if got := string(buf[:n]); got != want {
		m.t.Fatalf("got %q, want %q", got, want)
	}
}

// adminCLI runs `relay admin` as a user would.
func adminCLI(t *testing.T, sock string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"admin", "--admin-socket", sock}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func TestAdminCommands(t *testing.T) {
	d := startDaemon(t, testOptions(t))
	sock := d.l.Admin
	alice := d.join(t, "alice")
	bob := d.join(t, "bob")
	alice.expect("bob joined the chat room")
	carol := d.join(t, "carol")
	alice.expect("carol joined the chat room")
	bob.expect("carol joined the chat room")

	t.Run("permissions", func(t *testing.T) {
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
			t.Fatalf("admin socket mode %v, want socket 0600", fi.Mode())
		}
	})
	t.Run("notice reaches every member", func(t *testing.T) {
		out, errs, code := adminCLI(t, sock, "notice", "server", "restarts", "at", "noon")
		if code != 0 || !strings.Contains(out, "3 members") {
			t.Fatalf("exit %d, out %q, err %q", code, out, errs)
		}
		for _, m := range []*member{alice, bob, carol} {
			m.expect("Admin notice: server restarts at noon")
		}
	})
	t.Run("who", func(t *testing.T) {
		out, _, code := adminCLI(t, sock, "who")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 3 {
			t.Fatalf("exit %d, who:\n%s", code, out)
		}
		for i, name := range []string{"alice", "bob", "carol"} {
			f := strings.Split(lines[i], "\t")
			if len(f) != 4 || f[0] != name || !strings.HasPrefix(f[1], "127.0.0.1:") || f[2] != "classic" || !strings.HasSuffix(f[3], "s") {
				t.Errorf("who line %q, want %s<TAB>127.0.0.1:PORT<TAB>classic<TAB>IDLE", lines[i], name)
			}
		}
		out, _, code = adminCLI(t, sock, "--json", "who")
		if code != 0 || !strings.Contains(out, `"name": "alice"`) || !strings.Contains(out, `"proto": "classic"`) {
			t.Fatalf("who --json: exit %d\n%s", code, out)
		}
	})
	t.Run("kick", func(t *testing.T) {
		out, _, code := adminCLI(t, sock, "kick", "CAROL", "spamming", "links")
		if code != 0 || !strings.Contains(out, "kicked carol") {
			t.Fatalf("kick: exit %d, %q", code, out)
		}
		carol.expect("Admin notice: you were removed by the administrator: spamming links")
		carol.expect("EXIT")
		alice.expect("carol was removed by the administrator: spamming links")
		bob.expect("carol was removed by the administrator: spamming links")
		_, errs, code := adminCLI(t, sock, "kick", "carol")
		if code != 1 || !strings.Contains(errs, "no such member") {
			t.Fatalf("second kick: exit %d, %q", code, errs)
		}
	})
	t.Run("stats", func(t *testing.T) {
		out, _, code := adminCLI(t, sock, "stats")
		if code != 0 || !strings.Contains(out, "members 2\n") || !strings.Contains(out, "logins 3\n") {
			t.Fatalf("stats: exit %d\n%s", code, out)
		}
		out, _, code = adminCLI(t, sock, "--json", "stats")
		if code != 0 || !strings.Contains(out, `"members": 2`) {
			t.Fatalf("stats --json: exit %d\n%s", code, out)
		}
	})
	t.Run("usage errors", func(t *testing.T) {
		if _, _, code := adminCLI(t, sock, "dance"); code != 2 {
			t.Errorf("unknown command: exit %d, want 2", code)
		}
		if _, _, code := adminCLI(t, sock, "notice"); code != 2 {
			t.Errorf("notice without text: exit %d, want 2", code)
		}
		if _, errs, code := adminCLI(t, sock, "notice", "bad\x1b[2Jclear"); code != 1 || !strings.Contains(errs, "control character") {
			t.Errorf("notice with ESC: exit %d, %q", code, errs)
		}
	})
}

func TestAdminNoRelay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	_, errs, code := adminCLI(t, path, "who")
	if code != 1 || !strings.HasPrefix(errs, "relay admin: no relay at "+path+": ") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

func TestSecondRelayRefusesLiveSocket(t *testing.T) {
	o := testOptions(t)
	d := startDaemon(t, o)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--listen", "127.0.0.1:0", "--metrics-listen", "", "--admin-socket", d.l.Admin}, &out, &errb)
	if code != 1 {
		t.Fatalf("second relay exit %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "another relay is already running with admin socket "+d.l.Admin) {
		t.Fatalf("stderr %q", errb.String())
	}
	// The first relay still answers on its socket.
	if _, _, code := adminCLI(t, d.l.Admin, "who"); code != 0 {
		t.Fatalf("first relay's admin socket broken: exit %d", code)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	o := testOptions(t)
	// A relay that died leaves its socket file behind: nobody answers.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: o.AdminSocket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(o.AdminSocket); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	d := startDaemon(t, o)
	if _, _, code := adminCLI(t, d.l.Admin, "stats"); code != 0 {
		t.Fatalf("admin on replaced socket: exit %d", code)
	}
}

func TestNonSocketPathLeftAlone(t *testing.T) {
	o := testOptions(t)
	if err := os.WriteFile(o.AdminSocket, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	code := run(context.Background(), []string{"--listen", "127.0.0.1:0", "--metrics-listen", "", "--admin-socket", o.AdminSocket}, io.Discard, &errb)
	if code != 1 || !strings.Contains(errb.String(), "not a socket") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if b, _ := os.ReadFile(o.AdminSocket); string(b) != "precious" {
		t.Fatal("the relay touched a file that is not a socket")
	}
}

func TestTakenPortIsOneClearLine(t *testing.T) {
	taken, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var errb bytes.Buffer
	code := run(context.Background(), []string{"--listen", taken.LocalAddr().String(), "--metrics-listen", "", "--admin-socket", shortSocketPath(t)}, io.Discard, &errb)
	want := "relay: listen on " + taken.LocalAddr().String() + ": bind: address already in use\n"
	if code != 1 || !strings.HasSuffix(errb.String(), want) || strings.Count(errb.String(), "relay:") != 1 {
		t.Fatalf("exit %d, stderr %q, want it to end with %q", code, errb.String(), want)
	}
}

// Linux lets any process of the same user join a reuseport group: a second
// relay with --readers on a live relay's port must still fail as on a taken
// port, and the first relay keep serving.
func TestSecondRelayOnReadersPortExits(t *testing.T) {
	o := testOptions(t)
	o.Readers = 2
	d := startDaemon(t, o)
	addr := d.l.UDP.String()
	var errb bytes.Buffer
	code := run(context.Background(), []string{"--listen", addr, "--readers", "2", "--metrics-listen", "", "--admin-socket", shortSocketPath(t)}, io.Discard, &errb)
	want := "relay: listen on " + addr + ": bind: address already in use\n"
	if code != 1 || !strings.HasSuffix(errb.String(), want) {
		t.Fatalf("exit %d, stderr %q, want it to end with %q", code, errb.String(), want)
	}
	a := d.join(t, "alice")
	b := d.join(t, "bob")
	a.expect("bob joined the chat room")
	b.send("C bob still here")
	a.expect("bob says: still here")
}

func TestShutdownTellsMembersAndRemovesSocket(t *testing.T) {
	d := startDaemon(t, testOptions(t))
	alice := d.join(t, "alice")
	bob := d.join(t, "bob")
	alice.expect("bob joined the chat room")
	d.stop(t)
	for _, m := range []*member{alice, bob} {
		m.expect("Admin notice: the relay is shutting down")
		m.expect("EXIT")
	}
	if _, err := os.Stat(d.l.Admin); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("admin socket still there after shutdown: %v", err)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	d := startDaemon(t, testOptions(t))
	scrape := func() string {
		t.Helper()
		resp, err := http.Get("http://" + d.l.Metrics.String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	before := scrape()
	for _, line := range []string{`chatrelay_logins_total{result="ok"} 0`, `chatrelay_members 0`, `chatrelay_pool_capacity 16`, "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(before, line) {
			t.Errorf("first scrape lacks %q", line)
		}
	}
	alice := d.join(t, "alice")
	bob := d.join(t, "bob")
	alice.expect("bob joined the chat room")
	alice.send("C alice hello")
	bob.expect("alice says: hello")
	bob.send("nonsense")
	bob.send("Q bob")
	bob.expect("EXIT")
	alice.expect("bob left the chat room")

	want := []string{
		`chatrelay_logins_total{result="ok"} 2`,
		`chatrelay_broadcasts_total{kind="chat"} 1`,
		`chatrelay_broadcasts_total{kind="join"} 2`,
		`chatrelay_broadcasts_total{kind="leave"} 1`,
		`chatrelay_datagrams_dropped_total{reason="unknown_verb"} 1`,
		`chatrelay_datagrams_received_total 5`,
		// OK x2, bob's join to alice, the chat to bob, EXIT, the leave to alice
		`chatrelay_deliveries_total 6`,
		`chatrelay_members 1`,
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		after := scrape()
		missing := ""
		for _, w := range want {
			if !strings.Contains(after, w+"\n") {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %q:\n%s", missing, grepPrefix(after, "chatrelay_"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := http.Get("http://" + d.l.Metrics.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz %d", resp.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()
}

func grepPrefix(s, p string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, p) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
