package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	rc "github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// Several relay addresses, end to end through run: login at the first
// that answers, and failover mid-session.

// deadAddr is a loopback UDP address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// Given two addresses, the first dead, chatcli logs in through the second,
// with v2 (--json) and with the classic protocol.
func TestLoginSkipsDeadAddress(t *testing.T) {
	r := relaytest.Start(t)
	addrs := deadAddr(t) + "," + r.Addr.String()
	alice := startClient(t, []string{"--json", "--proto", "v2", "--name", "alice", addrs}, nil)
	waitFor(t, 5*time.Second, "alice's login", func() bool { return r.Server.Stats().Members == 1 })
	carol := startClient(t, []string{"--json", "--proto", "classic", "--name", "carol", addrs}, nil)
	alice.waitStdout(t, `{"type":"join","room":"main","from":"carol","seq":2}`)
	carol.say(t, "hi from classic")
	alice.waitStdout(t, `{"type":"chat","room":"main","from":"carol","text":"hi from classic","seq":3}`)
	alice.say(t, "hi from v2")
	carol.waitStdout(t, `{"type":"chat","from":"alice","text":"hi from v2"}`)
	for name, c := range map[string]*client{"alice": alice, "carol": carol} {
		c.in.Close()
		if code := c.wait(t, 5*time.Second); code != 0 {
			t.Errorf("%s: exit %d; stderr %s", name, code, c.stderr.String())
		}
		if s := c.stderr.String(); s != "" {
			t.Errorf("%s: stderr %q", name, s)
		}
	}

	// No address answers: one line names them all, exit 1.
	dead := deadAddr(t) + "," + deadAddr(t)
	for _, proto := range []string{"v2", "classic"} {
		c := startClient(t, []string{"--proto", proto, "--name", "dave", dead}, nil)
		if code := c.wait(t, 10*time.Second); code != 1 {
			t.Errorf("%s, nothing listening: exit %d", proto, code)
		}
		if want := "chatcli: relay at " + dead + " is unreachable: connection refused (is it running?)\n"; c.stderr.String() != want {
			t.Errorf("%s, nothing listening: stderr %q, want %q", proto, c.stderr.String(), want)
		}
	}
}

// Alice's relay (a proxy) dies mid-session while bob keeps talking:
// chatcli prints the failover as one JSON line, resumes through the second
// address, and prints every one of bob's messages once, in order.
func TestFailoverMidSession(t *testing.T) {
	r := relaytest.Start(t)
	pA := relaytest.NewLossyProxy(t, r.Addr, relaytest.LossConfig{Seed: 1})
	pB := relaytest.NewLossyProxy(t, r.Addr, relaytest.LossConfig{Seed: 2})
	a, b := pA.Addr().String(), pB.Addr().String()
	alice := startClient(t, []string{"--json", "--proto", "v2", "--name", "alice", a + "," + b}, nil)
	waitFor(t, 5*time.Second, "alice's login", func() bool { return r.Server.Stats().Members == 1 })
	bob := startClient(t, []string{"--proto", "v2", "--name", "bob", r.Addr.String()}, nil)
	alice.waitStdout(t, `{"type":"join","room":"main","from":"bob","seq":2}`)
	const before, total = 5, 30
	for i := range before {
		bob.say(t, fmt.Sprintf("line %d", i))
	}
	alice.waitStdout(t, fmt.Sprintf(`{"type":"chat","room":"main","from":"bob","text":"line %d","seq":%d}`, before-1, before+2))

	pA.Close()
	alice.say(t, "while cut off") // sent once alice is back
	for i := before; i < total; i++ {
		bob.say(t, fmt.Sprintf("line %d", i))
	}
	// chatcli notices after 8 s of silence (four missed heartbeats).
	failover := fmt.Sprintf(`{"type":"failover","from":"%s","to":"%s"}`, a, b)
	waitFor(t, 20*time.Second, "the failover line", func() bool { return hasLine(alice.stdout.String(), failover) })
	waitFor(t, 10*time.Second, "bob's last line at alice", func() bool {
		return strings.Contains(alice.stdout.String(), fmt.Sprintf(`"text":"line %d"`, total-1))
	})
	bob.waitStdout(t, "alice says: while cut off")

	alice.in.Close()
	if code := alice.wait(t, 15*time.Second); code != 0 {
		t.Errorf("alice: exit %d; stderr %s", code, alice.stderr.String())
	}
	chats, failovers := 0, 0
	prev := 0.0
	for _, m := range jsonLines(t, alice.stdout.String()) {
		switch m["type"] {
		case "failover":
			failovers++
		case "chat":
			seq, _ := m["seq"].(float64)
			if seq <= prev {
				t.Errorf("seq %v after %v", seq, prev)
			}
			prev = seq
			if m["from"] != "bob" {
				continue
			}
			if want := fmt.Sprintf("line %d", chats); m["text"] != want {
				t.Errorf("bob's chat %d at alice is %v, want %q", chats, m["text"], want)
			}
			chats++
		}
	}
	if chats != total || failovers != 1 {
		t.Errorf("alice printed %d of bob's chats (want %d) and %d failovers (want 1):\n%s", chats, total, failovers, alice.stdout.String())
	}
	if s := alice.stderr.String(); !strings.Contains(s, "chatcli: session resumed") || strings.Contains(s, "logged in again") {
		t.Errorf("alice's stderr %q: want a resume, no new login", s)
	}
}

// The terminal says a failover in one line, in --lang's wording, and the
// status line names the relay switched to.
func TestModelFailover(t *testing.T) {
	for _, tt := range []struct{ lang, want string }{
		{"en", "* relay 10.0.0.1:9999 not answering: switched to 10.0.0.2:9999"},
		{"zh", "* 服务器 10.0.0.1:9999 无响应: 已切换到 10.0.0.2:9999"},
	} {
		m := newModel(options{Name: "alice", Lang: tt.lang}, "10.0.0.1:9999,10.0.0.2:9999", newRequestQueue())
		m.width, m.height = 100, 20
		next, _ := m.Update(loginMsg{name: "alice", proto: protoV2, rev: 1, addr: "10.0.0.1:9999"})
		m = next.(model)
		if s := m.statusText(); !strings.Contains(s, "alice @ 10.0.0.1:9999 |") {
			t.Errorf("status after login %q", s)
		}
		n := len(m.lines)
		next, _ = m.Update(eventsMsg{{Type: rc.EventFailover, PrevAddr: "10.0.0.1:9999", Addr: "10.0.0.2:9999"}})
		m = next.(model)
		if len(m.lines) != n+1 || !strings.Contains(m.lines[n], tt.want) {
			t.Errorf("%s: lines after the failover %q, want one with %q", tt.lang, m.lines[n:], tt.want)
		}
		if s := m.statusText(); !strings.Contains(s, "alice @ 10.0.0.2:9999 |") || !strings.Contains(s, "switching relay") {
			t.Errorf("status after the failover %q", s)
		}
		next, _ = m.Update(eventsMsg{{Type: rc.EventResumed}})
		m = next.(model)
		if s := m.statusText(); strings.Contains(s, "switching relay") {
			t.Errorf("status after the resume %q", s)
		}
	}
}
