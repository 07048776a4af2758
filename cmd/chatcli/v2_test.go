package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// jsonLines decodes every stdout line as a JSON object.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for line := range strings.SplitSeq(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", line, err)
		}
		objs = append(objs, m)
	}
	return objs
}

// With v2 and --json every event is one JSON line in room order; chats
// have exactly type, from, text and seq; backlog is marked; no seq twice.
func TestScriptJSON(t *testing.T) {
	r := relaytest.Start(t)
	addr := r.Addr.String()
	alice := startClient(t, []string{"--json", "--name", "alice", addr}, nil)
	waitFor(t, 5*time.Second, "alice's login", func() bool { return r.Server.Stats().Members == 1 })
	bob := startClient(t, []string{"--proto", "v2", "--name", "bob", addr}, nil)
	alice.waitStdout(t, `{"type":"join","room":"main","from":"bob","seq":2}`)
	alice.say(t, `hello <"世界"> & \ bob`)
	bob.waitStdout(t, `alice says: hello <"世界"> & \ bob`)
	bob.say(t, "hi alice")
	alice.waitStdout(t, `{"type":"chat","room":"main","from":"bob","text":"hi alice","seq":4}`)
	if !hasLine(alice.stdout.String(), `{"type":"chat","room":"main","from":"alice","text":"hello <\"世界\"> & \\ bob","seq":3}`) {
		t.Errorf("alice's own message is not in her output as sent:\n%s", alice.stdout.String())
	}

	// A late joiner gets the backlog, marked as history.
	carol := startClient(t, []string{"--json", "--name", "carol", addr}, nil)
	carol.waitStdout(t, `{"type":"chat","room":"main","from":"bob","text":"hi alice","seq":4,"history":true}`)
	carol.waitStdout(t, `{"type":"join","room":"main","from":"carol","seq":5}`)

	bob.in.Close()
	if code := bob.wait(t, 5*time.Second); code != 0 {
		t.Errorf("bob exit %d; stderr %s", code, bob.stderr.String())
	}
	alice.waitStdout(t, `{"type":"leave","room":"main","from":"bob","seq":6}`)
	for _, c := range []*client{alice, carol} {
		c.in.Close()
		if code := c.wait(t, 5*time.Second); code != 0 {
			t.Errorf("exit %d; stderr %s", code, c.stderr.String())
		}
	}
	for name, c := range map[string]*client{"alice": alice, "carol": carol} {
		seen := make(map[float64]bool)
		prev := 0.0
		for _, m := range jsonLines(t, c.stdout.String()) {
			switch m["type"] {
			case "chat", "join", "leave", "notice", "timeout", "missed", "throttled", "error":
			default:
				t.Errorf("%s: type %v", name, m["type"])
			}
			seq, _ := m["seq"].(float64)
			if seen[seq] {
				t.Errorf("%s: seq %v printed twice", name, seq)
			}
			if seq <= prev {
				t.Errorf("%s: seq %v after %v", name, seq, prev)
			}
			seen[seq], prev = true, seq
		}
		if s := c.stderr.String(); s != "" {
			t.Errorf("%s: stderr %q", name, s)
		}
	}
	if strings.Contains(bob.stdout.String(), "bob says") {
		t.Errorf("bob's own message printed in text mode:\n%s", bob.stdout.String())
	}
}

// classicOnly is a tiny relay that speaks only classic: v2 hellos get
// silence, as from an old relay. It records when v2 datagrams came.
type classicOnly struct {
	pc   net.PacketConn
	done chan struct{}

	mu  sync.Mutex // protects v2s
	v2s []time.Time
}

func startClassicOnly(t *testing.T) *classicOnly {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &classicOnly{pc: pc, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req := string(buf[:n])
			switch {
			case strings.HasPrefix(req, "CR2\n"):
				f.mu.Lock()
				f.v2s = append(f.v2s, time.Now())
				f.mu.Unlock()
			case strings.HasPrefix(req, "L "):
				pc.WriteTo([]byte("OK"), from)
			case strings.HasPrefix(req, "C "):
				parts := strings.SplitN(req, " ", 3)
				if len(parts) == 3 {
					pc.WriteTo([]byte("echo says: "+parts[2]), from)
				}
			case strings.HasPrefix(req, "Q "):
				pc.WriteTo([]byte("EXIT"), from)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-f.done })
	return f
}

// auto against a classic-only relay falls back after 6 unanswered hellos
// over more than 3 s, and chats.
func TestAutoFallsBackToClassic(t *testing.T) {
	f := startClassicOnly(t)
	addr := f.pc.LocalAddr().String()
	for _, args := range [][]string{
		{"--json", "--name", "alice", addr}, // name from the flag
		{"--json", addr},                    // name from the first line
	} {
		c := startClient(t, args, nil)
		if !slicesContain(args, "--name") {
			c.say(t, "alice")
		}
		waitFor(t, 10*time.Second, "the fallback", func() bool { return strings.Contains(c.stderr.String(), fallbackNote(addr)) })
		c.say(t, "hi there")
		c.waitStdout(t, `{"type":"chat","from":"echo","text":"hi there"}`)
		c.in.Close()
		if code := c.wait(t, 5*time.Second); code != 0 {
			t.Errorf("%q: exit %d; stderr %s", args, code, c.stderr.String())
		}
		f.mu.Lock()
		hellos := f.v2s
		f.v2s = nil
		f.mu.Unlock()
		if len(hellos) < 6 || hellos[len(hellos)-1].Sub(hellos[0]) < 2500*time.Millisecond {
			t.Errorf("%q: fell back after %d hellos over %v", args, len(hellos), hellos[len(hellos)-1].Sub(hellos[0]))
		}
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Loss looks like silence, but not for long enough: 20 logins through a
// proxy losing 10% both ways all get v2.
func TestAutoUnderLossNeverFallsBack(t *testing.T) {
	r := relaytest.Start(t)
	lp := relaytest.NewLossyProxy(t, r.Addr, relaytest.LossConfig{Seed: 20, Loss: 0.10})
	addr := lp.Addr().String()
	var clients []*client
	for i := range 20 {
		clients = append(clients, startClient(t, []string{"--name", fmt.Sprintf("u%d", i), addr}, nil))
	}
	waitFor(t, 20*time.Second, "20 members", func() bool { return r.Server.Stats().Members == 20 })
	for i, c := range clients {
		c.in.Close()
		if code := c.wait(t, 15*time.Second); code != 0 {
			t.Errorf("u%d: exit %d", i, code)
		}
		if s := c.stderr.String(); strings.Contains(s, "classic") {
			t.Errorf("u%d fell back: %s", i, s)
		}
	}
	t.Logf("proxy: %+v", lp.Stats())
}

func TestClassicJSON(t *testing.T) {
	tests := []struct{ line, want string }{
		{"bob says: hi: there", `{"type":"chat","from":"bob","text":"hi: there"}`},
		{"bob joined the chat room", `{"type":"join","from":"bob"}`},
		{"bob left the chat room", `{"type":"leave","from":"bob"}`},
		{"bob timed out", `{"type":"timeout","from":"bob"}`},
		{"bob was removed by the administrator: spam", `{"type":"leave","from":"bob","reason":"spam"}`},
		{"Admin notice: class <ends> at 5", `{"type":"notice","text":"class <ends> at 5"}`},
		{"张三 说: 你好", `{"type":"notice","text":"张三 说: 你好"}`},
	}
	for _, tt := range tests {
		if got := classicJSON(tt.line); got != tt.want {
			t.Errorf("classicJSON(%q) = %s, want %s", tt.line, got, tt.want)
		}
	}
}

// The terminal model: /who goes to the relay with v2 and is refused with
// classic; reconnection shows in the status line; missed messages warn.
func TestModelV2(t *testing.T) {
	for _, proto := range []string{protoV2, protoClassic} {
		reqs := newRequestQueue()
		m := newModel(options{Name: "alice"}, "relay:1", reqs)
		m.width, m.height = 80, 20
		next, _ := m.Update(loginMsg{name: "alice", proto: proto})
		m = next.(model)
		m.input.SetValue("/who")
		next, _ = m.submit()
		m = next.(model)
		r, ok := reqs.pop()
		switch proto {
		case protoV2:
			if !ok || r.kind != reqWho {
				t.Errorf("v2 /who: request %+v %v", r, ok)
			}
			next, _ = m.Update(whoMsg{names: []string{"alice", "bob"}})
			m = next.(model)
			if last := m.lines[len(m.lines)-1]; !strings.Contains(last, "in the room (2): alice, bob") {
				t.Errorf("who line %q", last)
			}
		default:
			if ok {
				t.Errorf("classic /who sent %+v", r)
			}
			if last := m.lines[len(m.lines)-1]; !strings.Contains(last, "not available with the classic protocol") {
				t.Errorf("classic /who line %q", last)
			}
		}
	}
	m := newModel(options{Name: "alice"}, "relay:1", newRequestQueue())
	next, _ := m.Update(loginMsg{name: "alice", proto: protoV2})
	m = next.(model)
	next, _ = m.Update(eventsMsg{{Type: "reconnecting", Reason: "rebind"}})
	m = next.(model)
	if s := m.statusText(); !strings.Contains(s, "reconnecting") {
		t.Errorf("status %q", s)
	}
	next, _ = m.Update(eventsMsg{{Type: "resumed"}, {Type: "missed", FromSeq: 3, ToSeq: 4, Count: 2}})
	m = next.(model)
	if s := m.statusText(); strings.Contains(s, "reconnecting") {
		t.Errorf("status after resume %q", s)
	}
	if last := m.lines[len(m.lines)-1]; !strings.Contains(last, "2 message(s) missed") {
		t.Errorf("missed line %q", last)
	}
}

// Through loss, duplication and reordering, --json prints every message
// once: repairs and duplicates never print a seq twice.
func TestScriptJSONThroughLoss(t *testing.T) {
	r := relaytest.Start(t)
	lp := relaytest.NewLossyProxy(t, r.Addr, relaytest.LossConfig{Seed: 11, Loss: 0.10, Dup: 0.05, Reorder: 0.05})
	alice := startClient(t, []string{"--json", "--proto", "v2", "--name", "alice", lp.Addr().String()}, nil)
	waitFor(t, 10*time.Second, "alice's login", func() bool { return r.Server.Stats().Members == 1 })
	bob := startClient(t, []string{"--proto", "v2", "--name", "bob", r.Addr.String()}, nil)
	alice.waitStdout(t, `{"type":"join","room":"main","from":"bob","seq":2}`)
	const n = 100
	for i := 0; i < n; i++ {
		bob.say(t, fmt.Sprintf("line %d", i))
	}
	alice.waitStdout(t, fmt.Sprintf(`{"type":"chat","room":"main","from":"bob","text":"line %d","seq":%d}`, n-1, n+2))
	seen := map[float64]bool{}
	chats := 0
	for _, m := range jsonLines(t, alice.stdout.String()) {
		seq, _ := m["seq"].(float64)
		if seen[seq] {
			t.Errorf("seq %v printed twice", seq)
		}
		seen[seq] = true
		if m["type"] == "chat" {
			if m["text"] != fmt.Sprintf("line %d", chats) {
				t.Errorf("chat %d is %v", chats, m["text"])
			}
			chats++
		}
	}
	if chats != n {
		t.Errorf("%d chats printed, want %d", chats, n)
	}
	t.Logf("proxy %+v", lp.Stats())
}

// With --lang zh, v2 room events read as the classic Chinese room's.
func TestScriptChineseWording(t *testing.T) {
	r := relaytest.Start(t)
	alice := startClient(t, []string{"--lang", "zh", "--proto", "v2", "--name", "小明", r.Addr.String()}, nil)
	waitFor(t, 5*time.Second, "小明's login", func() bool { return r.Server.Stats().Members == 1 })
	bob := startClient(t, []string{"--proto", "v2", "--name", "老师", r.Addr.String()}, nil)
	alice.waitStdout(t, "老师 进入聊天室")
	bob.say(t, "同学们好")
	alice.waitStdout(t, "老师 说: 同学们好")
	if _, err := r.Server.Notice("下课了"); err != nil {
		t.Fatal(err)
	}
	alice.waitStdout(t, "管理员消息: 下课了")
	bob.in.Close()
	alice.waitStdout(t, "老师 退出了聊天室")
}
