package relay_test

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// floodOn returns default flood settings changed by f.
func floodOn(f func(*relay.FloodSettings)) func(*relay.Config) {
	return func(c *relay.Config) {
		fs := relay.DefaultFloodSettings()
		f(&fs)
		c.Flood = &fs
	}
}

func TestChatFloodIsDroppedCountedAndTold(t *testing.T) {
	clock := newClock() // frozen: buckets refill only when the test says
	rec := newRecorder()
	r := relaytest.Start(t, func(c *relay.Config) { c.Now = clock.Now; c.Observer = rec },
		floodOn(func(fs *relay.FloodSettings) { fs.ChatRate = 1; fs.ChatBurst = 3 }))
	alice := dial(t, r).login("alice")
	bob := dialV2(t, r)
	bob.login("bob")
	bob.settle()
	alice.expect("bob joined the chat room")

	for i := 1; i <= 10; i++ {
		alice.send("C alice msg " + strconv.Itoa(i))
	}
	alice.expect("message not sent: you are sending too fast") // once, not seven times
	for i := 1; i <= 3; i++ {
		if f := bob.expectT(wire.FrameChat); f.Text != "msg "+strconv.Itoa(i) {
			t.Fatalf("bob got %+v", f)
		}
	}
	eventually(t, "7 flood drops", func() bool { return rec.drop(relay.DropFlood) == 7 })
	alice.sync("alice")

	// v2: the sender is told to back off, with how long.
	for i := 1; i <= 4; i++ {
		bob.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "main", ID: uint64(i), Text: "hi " + strconv.Itoa(i)})
	}
	for i := 1; i <= 3; i++ {
		if f := bob.expectT(wire.FrameChat); f.ID != uint64(i) {
			t.Fatalf("bob's echo %+v", f)
		}
	}
	th := bob.expectT(wire.FrameThrottled)
	if th.ID != 4 || th.RetryMS != 1000 {
		t.Fatalf("throttled %+v, want id 4 and retry_ms 1000", th)
	}
	// A second later the bucket has a token again: the retransmission goes through.
	clock.Advance(time.Second)
	bob.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "main", ID: 4, Text: "hi 4"})
	if f := bob.expectT(wire.FrameChat); f.ID != 4 {
		t.Fatalf("retransmission %+v", f)
	}
	alice.expect("bob says: hi 1")
}

func TestDatagramFloodBlocksOnlyTheFlooder(t *testing.T) {
	clock := newClock()
	rec := newRecorder()
	r := relaytest.Start(t, func(c *relay.Config) { c.Now = clock.Now; c.Observer = rec },
		floodOn(func(fs *relay.FloodSettings) {
			fs.DatagramRate, fs.DatagramBurst, fs.DatagramBlockDrops = 10, 20, 50
		}))
	alice := dial(t, r).login("alice")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")
	flooder := dial(t, r)
	for i := 0; i < 200; i++ {
		flooder.send("garbage")
	}
	// Flood control counts at the reader; what passes it is counted by a
	// handler on a worker, later: wait until all 200 are accounted for.
	eventually(t, "the flood to be read and handled", func() bool {
		return rec.drop(relay.DropUnknownVerb)+rec.drop(relay.DropFlood)+rec.drop(relay.DropBlocked) >= 200
	})
	if got := rec.drop(relay.DropUnknownVerb); got != 20 {
		t.Errorf("%d garbage datagrams got past flood control, want the burst of 20", got)
	}
	if rate, blocked := rec.drop(relay.DropFlood), rec.drop(relay.DropBlocked); rate != 50 || blocked != 130 {
		t.Errorf("drops: flood %d blocked %d, want 50, then a block for the other 130", rate, blocked)
	}
	// The block is per source: the members go on.
	alice.send("C alice still fine")
	bob.expect("alice says: still fine")
	// Blocked means blocked: even a valid login from the flooder is dropped.
	flooder.send("L flooder")
	bob.send("C bob and me")
	alice.expect("bob says: and me")
	if r.Server.Registry().ByName("flooder") != nil {
		t.Fatal("a blocked source logged in")
	}
}

func TestLoginBanAfterRefusals(t *testing.T) {
	clock := newClock()
	rec := newRecorder()
	r := relaytest.Start(t, func(c *relay.Config) { c.Now = clock.Now; c.Observer = rec },
		floodOn(func(fs *relay.FloodSettings) {
			fs.LoginRefusals, fs.LoginBanFor = 3, time.Minute
			fs.Exempt = []netip.Prefix{} // loopback is exempt by default; not here
		}))
	c := dial(t, r)
	for i := 0; i < 3; i++ {
		c.send("L admin")
		c.expect("name reserved")
	}
	c.send("L alice") // a fine name, but this IP is banned now: still one reply
	c.expect("too many refused logins: try again later")
	other := dial(t, r) // same IP, another port: the ban is per IP
	other.send("L bob")
	other.expect("too many refused logins: try again later")
	if rec.login(relay.LoginBanned) != 2 {
		t.Fatalf("banned logins counted %d", rec.login(relay.LoginBanned))
	}
	clock.Advance(time.Minute + time.Second)
	c.login("alice")
}

func TestLoopbackExemptFromLoginBans(t *testing.T) {
	r := relaytest.Start(t, floodOn(func(fs *relay.FloodSettings) { fs.LoginRefusals = 2 }))
	c := dial(t, r)
	for i := 0; i < 5; i++ {
		c.send("L admin")
		c.expect("name reserved")
	}
	c.login("alice")
}

// A classic client whose port is gone is removed when the relay notices
// (ICMP port unreachable), but only after 3 errors over at least 10 s with
// nothing heard from it in between: ICMP can be forged.
func TestClassicWithGonePortIsRemoved(t *testing.T) {
	clock := newClock()
	r := relaytest.Start(t, func(c *relay.Config) { c.Now = clock.Now; c.SweepEvery = 5 * time.Millisecond })
	alice := dial(t, r).login("alice")
	ghost := dial(t, r).login("ghost")
	alice.expect("ghost joined the chat room")
	ghostAddr := ghost.conn.LocalAddr().String()
	ghost.conn.Close()

	errs := uint64(0)
	say := func(text string) {
		t.Helper()
		alice.send("C alice " + text) // the relay's send to ghost draws an ICMP error
		alice.sync("alice")
		errs++
		eventually(t, "the ICMP error to be read", func() bool { return r.Server.Stats().ICMPErrors >= errs })
	}
	say("one")
	clock.Advance(5 * time.Second)
	say("two")
	clock.Advance(4 * time.Second) // 9 s since the first error: 3 errors, too soon
	say("three")
	if r.Server.Registry().ByName("ghost") == nil {
		t.Fatal("removed after 3 errors within 9 s")
	}
	clock.Advance(2 * time.Second) // 11 s: the next error removes it
	alice.send("C alice four")
	alice.expect("ghost timed out")
	if r.Server.Registry().ByName("ghost") != nil {
		t.Fatalf("ghost (%s) still a member", ghostAddr)
	}
}

// With ICMP errors on, every error about a gone member becomes the
// socket's pending error, returned by the next send to anybody. Many gone
// members must not cost the live ones a single message.
func TestGoneMembersDoNotCostTheLiveOnes(t *testing.T) {
	r := relaytest.Start(t)
	alice := dial(t, r).login("alice")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")
	var gone []*client
	for i := 0; i < 30; i++ {
		gone = append(gone, dial(t, r).login("gone"+strconv.Itoa(i)))
		alice.expect("gone" + strconv.Itoa(i) + " joined the chat room")
		bob.expect("gone" + strconv.Itoa(i) + " joined the chat room")
	}
	// Close them only now: a closed port could be handed to the next dial.
	for _, g := range gone {
		g.conn.Close()
	}
	for i := 0; i < 100; i++ {
		msg := "message " + strconv.Itoa(i)
		alice.send("C alice " + msg)
		bob.expect("alice says: " + msg)
		bob.send("C bob re " + msg)
		alice.expect("bob says: re " + msg)
	}
	if st := r.Server.Stats(); st.SendErrors != 0 {
		t.Fatalf("%d send errors", st.SendErrors)
	}
}
