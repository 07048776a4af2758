package relay_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// v2c is a raw v2 client for protocol tests: it sends frames and reads
// frames, with no reliability of its own.
type v2c struct {
	*client
	pending []wire.Frame
	token   string
	name    string
}

func dialV2(t testing.TB, r *relaytest.Relay) *v2c { return &v2c{client: dial(t, r)} }

func (c *v2c) sendFrames(fs ...*wire.Frame) int {
	c.t.Helper()
	b := wire.EncodeV2(fs...)
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
	return len(b)
}

// next returns the next frame, reading a datagram if none is pending.
func (c *v2c) next() wire.Frame {
	c.t.Helper()
	for len(c.pending) == 0 {
		d := c.recv()
		fs, err := wire.DecodeV2Wide(nil, []byte(d)) // revision 2's context lines applied, revision 4's lines read
		if err != nil {
			c.t.Fatalf("not v2: %q: %v", d, err)
		}
		c.pending = fs
	}
	f := c.pending[0]
	c.pending = c.pending[1:]
	return f
}

// settle reads the backlog after a login, up to and including the
// member's own join.
func (c *v2c) settle() {
	c.t.Helper()
	for {
		f := c.next()
		if f.T == wire.FrameJoin && f.From == c.name && !f.History {
			return
		}
		if !f.History {
			c.t.Fatalf("before own join: %+v", f)
		}
	}
}

// expectT returns the next frame, failing unless it has type typ.
func (c *v2c) expectT(typ string) wire.Frame {
	c.t.Helper()
	f := c.next()
	if f.T != typ {
		c.t.Fatalf("got frame %+v, want type %s", f, typ)
	}
	return f
}

// login does the whole validated login and returns the welcome.
func (c *v2c) login(name string) wire.Frame {
	c.t.Helper()
	pad := strings.Repeat("p", 256)
	c.sendFrames(&wire.Frame{T: wire.FrameHello, Room: wire.RoomMain, Name: name, Pad: pad})
	retry := c.expectT(wire.FrameRetry)
	c.sendFrames(&wire.Frame{T: wire.FrameHello, Room: wire.RoomMain, Name: name, Cookie: retry.Cookie})
	w := c.expectT(wire.FrameWelcome)
	c.token, c.name = w.Token, w.Name
	return w
}

func TestV2LoginChatAndClassicSideBySide(t *testing.T) {
	rec := newRecorder()
	r := relaytest.Start(t, func(c *relay.Config) { c.Observer = rec })
	alice := dial(t, r).login("alice") // classic
	alice.sync("alice")                // her join event is sequenced before bob arrives
	bob := dialV2(t, r)
	w := bob.login("Bob")
	if w.Name != "Bob" || len(w.Token) < 20 || w.Epoch == "" || w.Room != "main" {
		t.Fatalf("welcome %+v", w)
	}
	if h := bob.expectT(wire.FrameJoin); !h.History || h.From != "alice" || h.Seq != w.Seq {
		t.Fatalf("backlog %+v, want alice's join as history", h)
	}
	join := bob.expectT(wire.FrameJoin) // its own join, in room order
	if join.From != "Bob" || join.Seq != w.Seq+1 || join.Epoch != w.Epoch || join.History {
		t.Fatalf("join %+v after welcome %+v", join, w)
	}
	alice.expect("Bob joined the chat room")

	alice.send("C alice hello bob")
	ev := bob.expectT(wire.FrameChat)
	if ev.From != "alice" || ev.Text != "hello bob" || ev.Seq != join.Seq+1 {
		t.Fatalf("chat %+v", ev)
	}
	bob.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "main", ID: 1, Text: "hi alice 中文"})
	alice.expect("Bob says: hi alice 中文")
	echo := bob.expectT(wire.FrameChat) // the echo is the ack
	if echo.ID != 1 || echo.From != "Bob" || echo.Seq != ev.Seq+1 {
		t.Fatalf("echo %+v", echo)
	}
	// A retransmission is acknowledged, not broadcast again.
	bob.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "main", ID: 1, Text: "hi alice 中文"})
	ack := bob.expectT(wire.FrameAck)
	if ack.ID != 1 || ack.Seq != echo.Seq {
		t.Fatalf("ack %+v", ack)
	}
	alice.sync("alice")
	eventually(t, "duplicate counted", func() bool { return rec.drop(relay.DropDuplicate) == 1 })

	// who
	bob.sendFrames(&wire.Frame{T: wire.FrameWho, Room: "main"})
	who := bob.expectT(wire.FrameMembers)
	if strings.Join(who.Names, ",") != "alice,Bob" {
		t.Fatalf("who %+v", who)
	}
	// quit, and a repeated quit
	bob.sendFrames(&wire.Frame{T: wire.FrameQuit, Room: "main"})
	bob.expectT(wire.FrameBye)
	alice.expect("Bob left the chat room")
	bob.sendFrames(&wire.Frame{T: wire.FrameQuit, Room: "main"})
	bob.expectT(wire.FrameBye)
}

func TestV2RepairAndMissed(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) { c.Ring = 16; c.Backlog = 3 })
	talker := dial(t, r).login("talker")
	for i := 0; i < 30; i++ {
		talker.send("C talker line " + string(rune('a'+i%26)))
	}
	bob := dialV2(t, r)
	talker.sync("talker") // all 30 chats are sequenced before bob logs in
	w := bob.login("bob")
	if w.Seq != 31 { // talker's join and 30 chats
		t.Fatalf("welcome seq %d, want 31", w.Seq)
	}
	for i := 29; i <= 31; i++ { // backlog: the last 3, marked history
		h := bob.expectT(wire.FrameChat)
		if !h.History || h.Seq != uint64(i) {
			t.Fatalf("backlog %+v, want seq %d history", h, i)
		}
	}
	bob.expectT(wire.FrameJoin) // seq 32
	// Repair a range partly out of the 16-event ring (17..32):
	// 5..20 -> missed 5..16, then 17..20.
	bob.sendFrames(&wire.Frame{T: wire.FrameRepair, Room: "main", FromSeq: 5, ToSeq: 20})
	missed := bob.expectT(wire.FrameMissed)
	if missed.FromSeq != 5 || missed.ToSeq != 16 || missed.Count != 12 {
		t.Fatalf("missed %+v", missed)
	}
	for i := 17; i <= 20; i++ {
		if f := bob.expectT(wire.FrameChat); f.Seq != uint64(i) || f.History {
			t.Fatalf("repair %+v, want seq %d", f, i)
		}
	}
	// Tail loss: a ping with an old last gets the events after it, then pong.
	bob.sendFrames(&wire.Frame{T: wire.FramePing, Room: "main", Last: 30})
	if f := bob.expectT(wire.FrameChat); f.Seq != 31 {
		t.Fatalf("tail repair %+v", f)
	}
	if f := bob.expectT(wire.FrameJoin); f.Seq != 32 {
		t.Fatalf("tail repair %+v", f)
	}
	if p := bob.expectT(wire.FramePong); p.Seq != 32 || p.Epoch != w.Epoch {
		t.Fatalf("pong %+v", p)
	}
}

func TestV2ResumeFromANewAddress(t *testing.T) {
	r := relaytest.Start(t)
	alice := dial(t, r).login("alice")
	bob := dialV2(t, r)
	bob.login("bob")
	bob.settle()
	alice.expect("bob joined the chat room")
	alice.send("C alice one")
	one := bob.expectT(wire.FrameChat)

	// bob's NAT rebinds: a new source port. alice says two things meanwhile.
	moved := dialV2(t, r)
	bob.conn.Close()
	alice.send("C alice two")
	alice.send("C alice three")
	alice.sync("alice")
	pad := strings.Repeat("p", 256)
	moved.sendFrames(&wire.Frame{T: wire.FrameResume, Room: "main", Token: bob.token, Last: one.Seq, Pad: pad})
	retry := moved.expectT(wire.FrameRetry)
	moved.sendFrames(&wire.Frame{T: wire.FrameResume, Room: "main", Token: bob.token, Last: one.Seq, Cookie: retry.Cookie})
	w := moved.expectT(wire.FrameWelcome)
	if w.Name != "bob" || w.Token != bob.token {
		t.Fatalf("welcome %+v", w)
	}
	for _, want := range []string{"two", "three"} {
		if f := moved.expectT(wire.FrameChat); f.Text != want {
			t.Fatalf("after resume got %+v, want %q", f, want)
		}
	}
	moved.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "main", ID: 1, Text: "back"})
	alice.expect("bob says: back") // no leave or join came first
	if got := r.Server.Registry().ByName("bob").Addr(); got.String() != moved.conn.LocalAddr().String() {
		t.Fatalf("bob at %v, want %v", got, moved.conn.LocalAddr())
	}
	// An unknown token is refused, so the client logs in again.
	x := dialV2(t, r)
	x.sendFrames(&wire.Frame{T: wire.FrameResume, Room: "main", Token: "nope", Pad: pad})
	retry = x.expectT(wire.FrameRetry)
	x.sendFrames(&wire.Frame{T: wire.FrameResume, Room: "main", Token: "nope", Cookie: retry.Cookie})
	if f := x.expectT(wire.FrameRefused); f.Code != relay.LoginUnknownSession {
		t.Fatalf("refused %+v", f)
	}
}

// A spoofed v2 login (its sender never completes validation) gets at most
// one reply no larger than its request, creates no member, and its address
// never receives room traffic.
func TestV2NoAmplification(t *testing.T) {
	rec := newRecorder()
	r := relaytest.Start(t, func(c *relay.Config) { c.Observer = rec })
	alice := dial(t, r).login("alice")
	victim := dialV2(t, r)
	n := victim.sendFrames(&wire.Frame{T: wire.FrameHello, Room: "main", Name: "victim", Pad: strings.Repeat("p", 256)})
	reply := victim.recv()
	if len(reply) > n {
		t.Fatalf("retry of %d bytes to a %d-byte hello", len(reply), n)
	}
	// A bare hello, smaller than any retry, gets nothing at all.
	victim.sendFrames(&wire.Frame{T: wire.FrameHello, Name: "v"})
	// A forged cookie gets a retry again, never a welcome.
	victim.sendFrames(&wire.Frame{T: wire.FrameHello, Room: "main", Name: "victim", Cookie: "AAAAAAAAAAAAAAAAAAAAAAAAAAA", Pad: strings.Repeat("p", 256)})
	if f, _ := wire.DecodeV2(nil, []byte(victim.recv())); len(f) != 1 || f[0].T != wire.FrameRetry {
		t.Fatalf("forged cookie answered with %+v", f)
	}
	eventually(t, "unvalidated drop counted", func() bool { return rec.drop(relay.DropUnvalidated) == 1 })
	if r.Server.Registry().Len() != 1 {
		t.Fatalf("%d members, want only alice", r.Server.Registry().Len())
	}
	alice.send("C alice room traffic")
	alice.sync("alice")
	// The victim's next datagram is the answer to this probe, so no room
	// traffic reached it.
	victim.conn.Write([]byte("nonsense"))
	victim.sendFrames(&wire.Frame{T: wire.FrameHello, Room: "main", Name: "x", Pad: strings.Repeat("p", 256)})
	victim.expectT(wire.FrameRetry)
}

func TestClassicOff(t *testing.T) {
	rec := newRecorder()
	r := relaytest.Start(t, func(c *relay.Config) { c.Observer = rec; c.DisableClassic = true })
	c := dial(t, r)
	c.send("L alice")
	bob := dialV2(t, r)
	bob.login("bob") // v2 still works, and c got nothing (no reply to any classic request)
	eventually(t, "classic_off counted", func() bool { return rec.drop(relay.DropClassicOff) == 1 })
	c.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.conn.Read(make([]byte, 64)); err == nil {
		t.Fatal("a classic login was answered with --classic off")
	}
}

func TestEvictions(t *testing.T) {
	clock := newClock()
	r := relaytest.Start(t, func(c *relay.Config) {
		c.Now = clock.Now
		c.SweepEvery = 5 * time.Millisecond
		c.V2Timeout = 15 * time.Second
		c.ClassicIdle = time.Hour
	})
	watcher := dialV2(t, r)
	watcher.login("watcher")
	watcher.settle()
	ghost := dialV2(t, r)
	ghost.login("ghost")
	watcher.expectT(wire.FrameJoin)
	reader := dial(t, r).login("reader")
	watcher.expectT(wire.FrameJoin)

	// Time passes in steps shorter than the v2 timeout, the watcher
	// heartbeating after each (its pong answered before the next step, so
	// the sweeper never finds it silent); ghost does not heartbeat.
	var timeouts []string
	last := uint64(3)
	pass := func(total time.Duration) {
		for total > 0 {
			step := min(total, 10*time.Second)
			clock.Advance(step)
			total -= step
			watcher.sendFrames(&wire.Frame{T: wire.FramePing, Room: "main", Last: last})
			for {
				f := watcher.next()
				if f.T == wire.FrameTimeout && f.Seq > last { // a ping's tail repair sends it again
					timeouts = append(timeouts, f.From)
					last = f.Seq
				}
				if f.T == wire.FramePong {
					break
				}
			}
		}
	}
	timedOut := func(name string) bool {
		for _, n := range timeouts {
			if n == name {
				return true
			}
		}
		return false
	}
	pass(16 * time.Second)
	for deadline := time.Now().Add(10 * time.Second); !timedOut("ghost"); pass(time.Second) {
		if time.Now().After(deadline) {
			t.Fatalf("ghost never timed out; timeouts %q", timeouts)
		}
	}
	if len(timeouts) != 1 {
		t.Fatalf("timeouts %q, want ghost's only", timeouts)
	}
	reader.expect("ghost timed out")

	// A classic member idle for over an hour gets a notice, then EXIT.
	pass(time.Hour)
	reader.expect("Admin notice: you were disconnected after being idle too long")
	reader.expect("EXIT")
	for deadline := time.Now().Add(10 * time.Second); !timedOut("reader"); pass(time.Second) {
		if time.Now().After(deadline) {
			t.Fatalf("reader never timed out; timeouts %q", timeouts)
		}
	}
	if n := r.Server.Registry().Len(); n != 1 {
		t.Fatalf("%d members, want the watcher only", n)
	}
}

func TestShutdownTellsV2ToReconnect(t *testing.T) {
	r := relaytest.Start(t)
	bob := dialV2(t, r)
	w := bob.login("bob")
	bob.settle()
	if err := r.Server.Shutdown(shortCtx(t)); err != nil {
		t.Fatal(err)
	}
	if f := bob.expectT(wire.FrameRestart); f.Epoch != w.Epoch {
		t.Fatalf("restart %+v", f)
	}
}

// A lost welcome makes the client send its hello again: the answer is the
// same welcome (the seq the session began at, so it repairs what came
// after, its own join included) and the same backlog, not a second join.
func TestV2RepeatedHelloGetsTheSameWelcome(t *testing.T) {
	r := relaytest.Start(t)
	alice := dial(t, r).login("alice")
	alice.sync("alice")
	bob := dialV2(t, r)
	pad := strings.Repeat("p", 256)
	bob.sendFrames(&wire.Frame{T: wire.FrameHello, Room: "main", Name: "bob", Pad: pad})
	retry := bob.expectT(wire.FrameRetry)
	hello := &wire.Frame{T: wire.FrameHello, Room: "main", Name: "bob", Cookie: retry.Cookie}
	bob.sendFrames(hello)
	w1 := bob.expectT(wire.FrameWelcome)
	bob.name = w1.Name
	bob.settle() // alice's join as history, then bob's own join
	alice.expect("bob joined the chat room")
	alice.send("C alice after bob came")
	if f := bob.expectT(wire.FrameChat); f.Text != "after bob came" {
		t.Fatalf("got %+v", f)
	}

	bob.sendFrames(hello) // as if the first welcome was lost
	w2 := bob.expectT(wire.FrameWelcome)
	if w2.Seq != w1.Seq || w2.Token != w1.Token {
		t.Fatalf("second welcome %+v, first %+v", w2, w1)
	}
	if h := bob.expectT(wire.FrameJoin); !h.History || h.From != "alice" || h.Seq != w1.Seq {
		t.Fatalf("backlog %+v", h)
	}
	alice.sync("alice") // and no second join notice
}

// A v2 member that has its welcome is in main, as a classic member that
// has its OK is: a login right after the welcome is announced to it live,
// and the new member has its join in the backlog, as history, never live.
// Thirty pairs, each logging in the moment the first has its welcome.
func TestV2WelcomedMemberIsInMain(t *testing.T) {
	r := relaytest.Start(t)
	for i := range 30 {
		first, second := dialV2(t, r), dialV2(t, r)
		a, b := fmt.Sprintf("first%d", i), fmt.Sprintf("second%d", i)
		first.login(a)
		w := second.login(b)
		var seen bool
		for {
			f := second.next()
			if f.T == wire.FrameJoin && f.From == a {
				if !f.History || f.Seq > w.Seq {
					t.Fatalf("pair %d: %s's join came live (%+v) after the welcome %+v: it was not in main at its welcome", i, a, f, w)
				}
				seen = true
			}
			if f.T == wire.FrameJoin && f.From == b && !f.History {
				break
			}
		}
		if !seen {
			t.Fatalf("pair %d: no join of %s in %s's backlog, before its own: %s was not in main at its welcome", i, a, b, a)
		}
		first.settle()
		if f := first.expectT(wire.FrameJoin); f.From != b || f.History {
			t.Fatalf("pair %d: %s got %+v, want %s's join, live", i, a, f, b)
		}
	}
}
