package client_test

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// Tests of several relay addresses: Dial takes the first that answers, and
// a member whose relay falls silent fails over to the next one.

// quickFailover notices a silent relay within a second (DeadAfter is four
// heartbeats) and gives an unanswering address 600 ms: long enough for a
// loaded machine's relay to answer a resume.
func quickFailover(c *client.Config) {
	c.HeartbeatEvery = 250 * time.Millisecond
	c.HelloEvery = 150 * time.Millisecond
	c.HelloSilence = 4
}

// logSession logs k's events that are not room events, to explain a
// failure.
func logSession(t *testing.T, who string, k *collector) {
	t.Helper()
	for _, e := range k.events() {
		if !e.IsRoomEvent() {
			t.Logf("%s: %+v", who, e)
		}
	}
}

// deadAddr is a loopback UDP address where nothing listens: datagrams sent
// there draw an ICMP port unreachable.
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

// silentAddr is a loopback UDP address that takes every datagram and
// answers none, as a relay that hangs or a path that loses everything.
func silentAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func isFailover(from, to string) func(client.Event) bool {
	return func(e client.Event) bool { return e.Type == client.EventFailover && e.PrevAddr == from && e.Addr == to }
}

// Dial logs in at the first address that answers, whether the ones before
// it refuse the connection or stay silent; with none answering it fails as
// with one address.
func TestDialFirstAnswering(t *testing.T) {
	r := relaytest.Start(t)
	dead, silent := deadAddr(t), silentAddr(t)
	for _, tt := range []struct {
		name  string
		addrs []string
		want  string // the address logged in at; "" for an error
		err   error
	}{
		{"dead first", []string{dead, r.Addr.String()}, r.Addr.String(), nil},
		{"silent first", []string{silent, r.Addr.String()}, r.Addr.String(), nil},
		{"all dead", []string{dead, deadAddr(t)}, "", client.ErrUnreachable},
		{"silent and dead", []string{silent, dead}, "", client.ErrNoAnswer},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := client.Config{Addrs: tt.addrs, Name: "alice"}
			quickFailover(&cfg)
			c, err := client.Dial(ctx5(t), cfg)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || c != nil {
					t.Fatalf("dial %v: %v, want %v", tt.addrs, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial %v: %v", tt.addrs, err)
			}
			defer closeClient(t, c)
			if got := c.Addr(); got != tt.want {
				t.Errorf("logged in at %s, want %s", got, tt.want)
			}
		})
	}
	// Addr and Addrs make one list, Addr first.
	c, err := client.Dial(ctx5(t), client.Config{Addr: dead, Addrs: []string{dead, r.Addr.String()}, Name: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	defer closeClient(t, c)
	if got := c.Addr(); got != r.Addr.String() {
		t.Errorf("Addr+Addrs: logged in at %s", got)
	}
}

// chatsFrom is the texts of from's chats in k, in the order delivered.
func chatsFrom(k *collector, from string) []string {
	var texts []string
	for _, e := range k.events() {
		if e.Type == client.EventChat && e.From == from {
			texts = append(texts, e.Text)
		}
	}
	return texts
}

// wantChats fails unless got is exactly prefix0..prefix(n-1), in order.
func wantChats(t *testing.T, who string, got []string, prefix string, n int) {
	t.Helper()
	if len(got) != n {
		t.Errorf("%s got %d messages, want %d: %q", who, len(got), n, got)
		return
	}
	for i, text := range got {
		if want := fmt.Sprintf("%s%d", prefix, i); text != want {
			t.Errorf("%s: message %d is %q, want %q (all: %q)", who, i, text, want, got)
			return
		}
	}
}

// Alice reaches one relay through two proxies, bob directly. Alice's proxy
// dies mid-chat while bob keeps talking: alice says so, fails over to the
// other proxy, resumes her session there and gets every one of bob's
// messages once, in order; bob gets hers, and nobody sees her leave.
func TestFailoverResumes(t *testing.T) {
	r := relaytest.Start(t)
	pA := relaytest.NewLossyProxy(t, r.Addr, relaytest.LossConfig{Seed: 1})
	pB := relaytest.NewLossyProxy(t, r.Addr, relaytest.LossConfig{Seed: 2})
	a, b := pA.Addr().String(), pB.Addr().String()
	alice := dial(t, a, "alice", 1, quickFailover, func(c *client.Config) { c.Addrs = []string{b} })
	ka := collect(alice)
	bob := dial(t, r.Addr.String(), "bob", 2, quickFailover)
	kb := collect(bob)
	ka.waitEvent(t, "bob's join", func(e client.Event) bool { return e.Type == client.EventJoin && e.From == "bob" })
	if got := alice.Addr(); got != a {
		t.Fatalf("alice is at %s, want the first proxy %s", got, a)
	}
	const before, total = 10, 60
	for i := range before {
		bob.Send(fmt.Sprintf("b%d", i))
	}
	waitFor(t, 5*time.Second, "bob's first messages at alice", func() bool { return len(chatsFrom(ka, "bob")) == before })

	pA.Close()
	alice.Send("a0") // waits in alice's outbox until she is back
	for i := before; i < total; i++ {
		bob.Send(fmt.Sprintf("b%d", i))
		time.Sleep(10 * time.Millisecond) // bob keeps talking while alice is cut off
	}
	ka.waitEvent(t, "the failover notice", isFailover(a, b))
	ka.waitEvent(t, "the resume", func(e client.Event) bool { return e.Type == client.EventResumed })
	waitFor(t, 10*time.Second, "all of bob's messages at alice", func() bool { return len(chatsFrom(ka, "bob")) >= total })
	alice.Send("a1")
	waitFor(t, 5*time.Second, "alice's messages at bob", func() bool { return len(chatsFrom(kb, "alice")) >= 2 })
	if err := alice.Flush(ctx5(t)); err != nil {
		t.Fatal(err)
	}

	wantChats(t, "alice", chatsFrom(ka, "bob"), "b", total)
	wantChats(t, "bob", chatsFrom(kb, "alice"), "a", 2)
	if got := alice.Addr(); got != b {
		t.Errorf("alice is at %s after the failover, want %s", got, b)
	}
	for _, e := range ka.events() {
		switch e.Type {
		case client.EventMissed, client.EventNewSession, client.EventRestarted, client.EventEnded, client.EventError:
			t.Errorf("alice: unexpected %+v", e)
		}
	}
	// One failover, A to B; on a machine so loaded that B's answer took
	// longer than the client waits, the client went round again (B, A, B),
	// which changes nothing else.
	var fos []client.Event
	for _, e := range ka.events() {
		if e.Type == client.EventFailover {
			fos = append(fos, e)
		}
	}
	if len(fos) == 0 || !isFailover(a, b)(fos[0]) || len(fos)%2 != 1 {
		t.Errorf("failovers %+v, want one from %s to %s", fos, a, b)
	} else if len(fos) > 1 {
		t.Logf("%d failovers: the relay's answer was late", len(fos))
	}
	want := fmt.Sprintf("relay %s not answering: switched to %s", a, b)
	for _, e := range fos[:min(len(fos), 1)] {
		if e.String() != want || e.Format("zh") != fmt.Sprintf("服务器 %s 无响应: 已切换到 %s", a, b) {
			t.Errorf("failover worded %q / %q, want %q", e.String(), e.Format("zh"), want)
		}
	}
	for _, e := range kb.events() {
		if (e.Type == client.EventLeave || e.Type == client.EventTimeout || e.Type == client.EventJoin) && e.From == "alice" && !e.History {
			t.Errorf("bob saw %+v", e)
		}
	}
	if st := alice.Stats(); st.Failovers != uint64(len(fos)) || st.Resumes != 1 || st.Relogins != 0 {
		t.Errorf("alice stats %+v", st)
	}
	if t.Failed() {
		logSession(t, "alice", ka)
	}
}

// The next address is another relay, which does not know alice's session:
// she logs in there instead, says so once naming it, is back in her rooms,
// and chats on.
func TestFailoverToRelayWithoutSession(t *testing.T) {
	r1, r2 := relaytest.Start(t), relaytest.Start(t)
	p1 := relaytest.NewLossyProxy(t, r1.Addr, relaytest.LossConfig{Seed: 1})
	a, b := p1.Addr().String(), r2.Addr.String()
	alice := dial(t, a, "alice", 1, quickFailover, func(c *client.Config) { c.Addrs = []string{b} })
	ka := collect(alice)
	alice.Join("dev", "")
	ka.waitEvent(t, "joined dev", isType(client.EventJoined, "dev"))
	bob := dial(t, b, "bob", 2, quickFailover)
	kb := collect(bob)
	bob.Join("dev", "")
	kb.waitEvent(t, "bob joined dev", isType(client.EventJoined, "dev"))

	p1.Close()
	ka.waitEvent(t, "the failover notice", isFailover(a, b))
	relogin := func(e client.Event) bool {
		return (e.Type == client.EventNewSession || e.Type == client.EventRestarted) && e.Addr == b
	}
	e := ka.waitEvent(t, "the new login at the other relay", relogin)
	if want := fmt.Sprintf("relay %s does not know our session: logged in again there", b); !strings.HasPrefix(e.String(), want) {
		t.Errorf("new login worded %q, want it to start %q", e.String(), want)
	}
	kb.waitEvent(t, "alice back in dev", func(e client.Event) bool {
		return e.Type == client.EventJoin && e.Room == "dev" && e.From == "alice"
	})
	alice.SendTo("dev", "hello from the other side")
	kb.waitEvent(t, "alice's message in dev", chatIn("dev", "hello from the other side"))

	if n := ka.count(relogin); n != 1 {
		t.Errorf("%d new-login events, want 1", n)
	}
	if n := ka.count(func(e client.Event) bool { return e.Type == client.EventResumed }); n != 0 {
		t.Errorf("%d resumed events at a relay that did not know the session", n)
	}
	if got := joinedNames(alice); !slices.Equal(got, []string{"main", "dev"}) {
		t.Errorf("alice is in %q after the new login", got)
	}
	if n := ka.count(func(e client.Event) bool { return e.Type == client.EventJoined }); n != 1 {
		t.Errorf("%d joined events: the rejoin should be quiet", n)
	}
	if st := alice.Stats(); st.Failovers%2 != 1 || st.Relogins != 1 {
		t.Errorf("alice stats %+v", st)
	}
	if t.Failed() {
		logSession(t, "alice", ka)
	}
}

// The next address does not answer: the client moves on round robin to
// the one after it and resumes there, nothing lost.
func TestFailoverSkipsSilentAddress(t *testing.T) {
	r := relaytest.Start(t)
	pA := relaytest.NewLossyProxy(t, r.Addr, relaytest.LossConfig{Seed: 1})
	pC := relaytest.NewLossyProxy(t, r.Addr, relaytest.LossConfig{Seed: 3})
	a, silent, c := pA.Addr().String(), silentAddr(t), pC.Addr().String()
	alice := dial(t, a, "alice", 1, quickFailover, func(cfg *client.Config) { cfg.Addrs = []string{silent, c} })
	ka := collect(alice)
	bob := dial(t, r.Addr.String(), "bob", 2, quickFailover)
	ka.waitEvent(t, "bob's join", func(e client.Event) bool { return e.Type == client.EventJoin && e.From == "bob" })
	pA.Close()
	for i := range 20 {
		bob.Send(fmt.Sprintf("b%d", i))
	}
	ka.waitEvent(t, "failover to the silent address", isFailover(a, silent))
	ka.waitEvent(t, "failover past it", isFailover(silent, c))
	ka.waitEvent(t, "the resume", func(e client.Event) bool { return e.Type == client.EventResumed })
	waitFor(t, 10*time.Second, "bob's messages at alice", func() bool { return len(chatsFrom(ka, "bob")) >= 20 })
	wantChats(t, "alice", chatsFrom(ka, "bob"), "b", 20)
	if st := alice.Stats(); st.Failovers%3 != 2 || st.Resumes != 1 {
		t.Errorf("alice stats %+v", st)
	}
	if t.Failed() {
		logSession(t, "alice", ka)
	}
}
