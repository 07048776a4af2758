package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// proc is a command run as a real process, its stdout kept.
type proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	mu     sync.Mutex // protects out
	out    bytes.Buffer
	stderr bytes.Buffer
}

func (p *proc) Write(b []byte) (int, error) { p.mu.Lock(); defer p.mu.Unlock(); return p.out.Write(b) }

func (p *proc) stdout() string { p.mu.Lock(); defer p.mu.Unlock(); return p.out.String() }

// startProc runs bin with args until the test ends (then it is killed).
func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{cmd: exec.CommandContext(ctx, bin, args...)}
	p.cmd.Stdout = p
	p.cmd.Stderr = &p.stderr
	in, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = in
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel()
			<-done
		}
		cancel()
	})
	return p
}

// buildRelayBin builds ../relay into the chatcli test's build directory.
func buildRelayBin(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(buildChatcli(t))
	bin := filepath.Join(dir, "relay")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if out, err := exec.Command(goTool(t), "build", "-o", bin, "../relay").CombinedOutput(); err != nil {
		t.Fatalf("go build ../relay: %v\n%s", err, out)
	}
	return bin
}

func goTool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	return p
}

// freeUDPPort returns a loopback port nobody listens on now.
func freeUDPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// jsonEvents parses a --json client's stdout.
func jsonEvents(t *testing.T, out string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		evs = append(evs, m)
	}
	return evs
}

// TestRoomsAndDMEndToEndThroughLoss runs the relay and three chatcli
// processes, each talking to the relay through a lossy, duplicating,
// reordering proxy: alice and bob chat in red, carol in blue, and alice
// sends carol a private message. Everyone sees every message of its rooms
// exactly once and in each sender's order, nothing of the other room, and
// only carol (and alice's own echo) the private one.
func TestRoomsAndDMEndToEndThroughLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs real processes")
	}
	chatcli, relayBin := buildChatcli(t), buildRelayBin(t)
	addr := freeUDPPort(t)
	relayProc := startProc(t, relayBin, "--listen", addr.String(), "--metrics-listen", "",
		"--admin-socket", filepath.Join(t.TempDir(), "admin.sock"), "--flood", "off")
	relayUp(t, addr)
	lp := relaytest.NewLossyProxy(t, addr, relaytest.LossConfig{Seed: 9, Loss: 0.08, Dup: 0.05, Reorder: 0.05})
	start := func(name, room string) *proc {
		return startProc(t, chatcli, "--json", "--proto", "v2", "--name", name, "--room", room, lp.Addr().String())
	}
	alice, bob, carol := start("alice", "red"), start("bob", "red"), start("carol", "blue")
	joined := func(p *proc, room string) func() bool {
		return func() bool { return strings.Contains(p.stdout(), `"room":"`+room+`"`) }
	}
	waitFor(t, 20*time.Second, "everyone in its room", func() bool {
		return joined(alice, "red")() && joined(bob, "red")() && joined(carol, "blue")()
	})
	// bob is in red once alice sees his join there.
	waitFor(t, 20*time.Second, "bob's join in red, at alice", func() bool {
		for _, e := range jsonEvents(t, alice.stdout()) {
			if e["type"] == "join" && e["from"] == "bob" && e["room"] == "red" {
				return true
			}
		}
		return false
	})
	const n = 30
	for i := 0; i < n; i++ {
		fmt.Fprintf(alice.stdin, "alice %d\n", i)
		fmt.Fprintf(bob.stdin, "bob %d\n", i)
		fmt.Fprintf(carol.stdin, "carol %d\n", i)
	}
	fmt.Fprintf(alice.stdin, "/msg carol a secret 秘密\n")

	chatsIn := func(p *proc) map[string][]string { // room -> texts, in order
		rooms := map[string][]string{}
		for _, e := range jsonEvents(t, p.stdout()) {
			if e["type"] == "chat" {
				room, _ := e["room"].(string)
				rooms[room] = append(rooms[room], e["text"].(string))
			}
		}
		return rooms
	}
	done := func(p *proc, room string, want int) func() bool {
		return func() bool { return len(chatsIn(p)[room]) >= want }
	}
	waitFor(t, 60*time.Second, "every chat everywhere", func() bool {
		return done(alice, "red", 2*n)() && done(bob, "red", 2*n)() && done(carol, "blue", n)()
	})
	for _, c := range []struct {
		who   string
		p     *proc
		room  string
		from  []string
		other string
	}{{"alice", alice, "red", []string{"alice", "bob"}, "blue"}, {"bob", bob, "red", []string{"alice", "bob"}, "blue"}, {"carol", carol, "blue", []string{"carol"}, "red"}} {
		rooms := chatsIn(c.p)
		if len(rooms[c.other]) != 0 {
			t.Errorf("%s saw %d chats of %s, a room it is not in", c.who, len(rooms[c.other]), c.other)
		}
		if got := len(rooms[c.room]); got != n*len(c.from) {
			t.Errorf("%s saw %d chats in %s, want %d (each once)", c.who, got, c.room, n*len(c.from))
		}
		next := map[string]int{}
		for _, text := range rooms[c.room] {
			var from string
			var i int
			fmt.Sscanf(text, "%s %d", &from, &i)
			if i != next[from] {
				t.Errorf("%s: %q after %s's line %d: lost, duplicated or out of order", c.who, text, from, next[from]-1)
			}
			next[from] = i + 1
		}
	}
	dms := func(p *proc) []map[string]any {
		var out []map[string]any
		for _, e := range jsonEvents(t, p.stdout()) {
			if e["type"] == "dm" {
				out = append(out, e)
			}
		}
		return out
	}
	waitFor(t, 20*time.Second, "the private message at carol and alice", func() bool {
		return len(dms(carol)) == 1 && len(dms(alice)) == 1
	})
	for _, d := range append(dms(carol), dms(alice)...) {
		if d["from"] != "alice" || d["to"] != "carol" || d["text"] != "a secret 秘密" {
			t.Errorf("dm %v", d)
		}
	}
	if got := dms(bob); len(got) != 0 {
		t.Errorf("bob saw a private message: %v", got)
	}
	if strings.Contains(bob.stdout(), "secret") {
		t.Error("the private text reached bob's output")
	}
	t.Logf("proxy %+v", lp.Stats())
	_ = relayProc
}
