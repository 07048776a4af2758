package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chatrelay/chatrelay/relay/relaytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.Cleanup(func(int) {
			if buildDir != "" {
				os.RemoveAll(buildDir)
			}
		}),
		// ants starts its default pool when imported: IgnoreCurrent skips
		// exactly the goroutines alive before the tests, so a pool a test
		// forgot to close is still caught (naming ants' functions would
		// hide it).
		goleak.IgnoreCurrent(),
	)
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client is one in-process run.
type client struct {
	stdout, stderr relaytest.Buffer
	in             *io.PipeWriter // nil when stdin is not a pipe
	code           chan int
}

// startClient runs run(ctx, args, stdin) on its own goroutine. With stdin
// nil it gets a pipe, written through c.in. Cleanup makes sure it ended.
func startClient(t *testing.T, args []string, stdin io.Reader) *client {
	t.Helper()
	c := &client{code: make(chan int, 1)}
	if stdin == nil {
		pr, pw := io.Pipe()
		stdin, c.in = pr, pw
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { c.code <- run(ctx, args, stdin, &c.stdout, &c.stderr) }()
	t.Cleanup(func() {
		cancel()
		if c.in != nil {
			c.in.Close()
		}
		select {
		case code := <-c.code:
			c.code <- code
		case <-time.After(10 * time.Second):
			t.Errorf("run %q did not return after cancel", args)
		}
	})
	return c
}

// say writes one line to the client's stdin.
func (c *client) say(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		t.Fatalf("writing %q to stdin: %v (stderr: %s)", line, err, c.stderr.String())
	}
}

// wait returns the exit status, failing the test after timeout.
func (c *client) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case code := <-c.code:
		c.code <- code
		return code
	case <-time.After(timeout):
		t.Fatalf("run did not return within %v; stderr: %s", timeout, c.stderr.String())
		return -1
	}
}

func (c *client) waitStdout(t *testing.T, want string) {
	t.Helper()
	waitFor(t, 5*time.Second, "stdout line "+want, func() bool { return hasLine(c.stdout.String(), want) })
}

// hasLine reports whether out has a line exactly equal to want.
func hasLine(out, want string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		if line == want {
			return true
		}
	}
	return false
}

// rawClient is a bare classic-protocol member, for checking what chatcli
// sends without trusting chatcli to read it.
type rawClient struct {
	conn *net.UDPConn
	mu   sync.Mutex // protects got
	got  []string
	done chan struct{}
}

func dialRaw(t *testing.T, addr, name string) *rawClient {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	// Log in synchronously, before the reader starts.
	if _, err := conn.Write([]byte("L " + name)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "OK" {
		t.Fatalf("raw login as %s: reply %q, err %v", name, buf[:n], err)
	}
	conn.SetReadDeadline(time.Time{})
	rc := &rawClient{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(rc.done)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			rc.mu.Lock()
			rc.got = append(rc.got, string(buf[:n]))
			rc.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		conn.Write([]byte("Q " + name))
		conn.Close()
		<-rc.done
	})
	return rc
}

func (rc *rawClient) send(t *testing.T, s string) {
	t.Helper()
	if _, err := rc.conn.Write([]byte(s)); err != nil {
		t.Errorf("raw send %q: %v", s, err)
	}
}

func (rc *rawClient) received() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.got...)
}

func (rc *rawClient) has(want string) bool {
	for _, s := range rc.received() {
		if s == want {
			return true
		}
	}
	return false
}

func (rc *rawClient) waitFor(t *testing.T, want string) {
	t.Helper()
	waitFor(t, 5*time.Second, "datagram "+want, func() bool { return rc.has(want) })
}

func TestParseFlags(t *testing.T) {
	t.Setenv("LC_ALL", "")
	t.Setenv("LC_MESSAGES", "")
	t.Setenv("LANG", "C.UTF-8")
	tests := []struct {
		args    []string
		want    options
		wantErr bool
	}{
		{args: nil, want: options{Addr: defaultAddr, Proto: protoAuto, Lang: "en"}},
		{args: []string{"--name", "张三"}, want: options{Name: "张三", Addr: defaultAddr, Proto: protoAuto, Lang: "en"}},
		{args: []string{"-name=bob", "example.org:7000"}, want: options{Name: "bob", Addr: "example.org:7000", Proto: protoAuto, Lang: "en"}},
		{args: []string{"[::1]:9999"}, want: options{Addr: "[::1]:9999", Proto: protoAuto, Lang: "en"}},
		{args: []string{"a.example:9999,[::1]:10000,10.0.0.3:9"}, want: options{Addr: "a.example:9999,[::1]:10000,10.0.0.3:9", Proto: protoAuto, Lang: "en"}},
		{args: []string{"a:1,"}, wantErr: true},
		{args: []string{",a:1"}, wantErr: true},
		{args: []string{"a:1,,b:2"}, wantErr: true},
		{args: []string{"a:1,nohost"}, wantErr: true},
		{args: []string{"a:1,b:0"}, wantErr: true},
		{args: []string{"a:1;b:2"}, wantErr: true},
		{args: []string{"--proto", "classic", "--json"}, want: options{Addr: defaultAddr, Proto: protoClassic, JSON: true, Lang: "en"}},
		{args: []string{"--proto=v2"}, want: options{Addr: defaultAddr, Proto: protoV2, Lang: "en"}},
		{args: []string{"--lang", "zh"}, want: options{Addr: defaultAddr, Proto: protoAuto, Lang: "zh"}},
		{args: []string{"--lang", "fr"}, wantErr: true},
		{args: []string{"--room", "dev"}, want: options{Addr: defaultAddr, Proto: protoAuto, Lang: "en", Room: "dev"}},
		{args: []string{"--room", "main"}, want: options{Addr: defaultAddr, Proto: protoAuto, Lang: "en"}},
		{args: []string{"--room", "@inbox"}, wantErr: true},
		{args: []string{"--room", "two words"}, wantErr: true},
		{args: []string{"--proto", "v3"}, wantErr: true},
		{args: []string{"a:1", "b:2"}, wantErr: true},
		{args: []string{"nohost"}, wantErr: true},
		{args: []string{"host:0"}, wantErr: true},
		{args: []string{"host:http"}, wantErr: true},
		{args: []string{"--bogus"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			got, err := parseFlags(fs, tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("parseFlags(%q) = %+v, want %+v", tt.args, got, tt.want)
			}
		})
	}
	if got := (options{Addr: "a:1,[::1]:2"}).addrs(); len(got) != 2 || got[0] != "a:1" || got[1] != "[::1]:2" {
		t.Errorf("addrs of a:1,[::1]:2 = %q", got)
	}
	// A Chinese locale picks Chinese wording.
	t.Setenv("LANG", "zh_CN.UTF-8")
	if o, err := parseFlags(flag.NewFlagSet("test", flag.ContinueOnError), nil); err != nil || o.Lang != "zh" {
		t.Fatalf("with LANG=zh_CN.UTF-8: %+v, %v", o, err)
	}
}

func TestRunUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Errorf("-h: exit %d, want 0", code)
	}
	if !strings.Contains(errb.String(), "exits 1, since there is nobody to ask") {
		t.Errorf("usage does not document the script-mode refusal:\n%s", errb.String())
	}
	for _, cmd := range commandHelp {
		if !strings.Contains(errb.String(), cmd) {
			t.Errorf("usage does not document %q", cmd)
		}
	}
	for _, want := range []string{"--room", `{"type":"dm","from":NAME,"to":NAME,"text":TEXT}`, "Ctrl-N", "Alt-1",
		"[HOST:PORT[,HOST:PORT...]]", `{"type":"failover","from":ADDR,"to":ADDR}`, "error, failover."} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("usage does not mention %s", want)
		}
	}
	errb.Reset()
	if code := run(context.Background(), []string{"a:1", "b:2"}, strings.NewReader(""), &out, &errb); code != 2 {
		t.Errorf("two addresses: exit %d, want 2", code)
	}
	errb.Reset()
	if code := run(context.Background(), []string{"--name", "two words", "127.0.0.1:9"}, strings.NewReader(""), &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "login refused: name must not contain spaces") {
		t.Errorf("--name with a space: exit %d, stderr %q", code, errb.String())
	}
}

// Script mode never opens the terminal: the test binary's stdin may be one.
func TestIsTerminalPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(r) || isTerminal(strings.NewReader("")) {
		t.Error("a pipe or a strings.Reader counted as a terminal")
	}
}
