package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// Tests of v2 revision 1 (rooms, the inbox, direct messages) against
// fakeRelay, which speaks docs/PROTOCOL.md's revision 1 (or 0).

// waitEvent waits for the first event matching f and returns it.
func (k *collector) waitEvent(t *testing.T, what string, f func(client.Event) bool) client.Event {
	t.Helper()
	var got client.Event
	waitFor(t, 5*time.Second, what, func() bool {
		for _, e := range k.events() {
			if f(e) {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

func isType(typ client.EventType, room string) func(client.Event) bool {
	return func(e client.Event) bool { return e.Type == typ && e.Room == room }
}

func chatIn(room, text string) func(client.Event) bool {
	return func(e client.Event) bool { return e.Type == client.EventChat && e.Room == room && e.Text == text }
}

func fast(c *client.Config) { c.HeartbeatEvery = 100 * time.Millisecond }

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A relay that speaks revision 0 answers the hello's rev with silence: the
// client stays in main, says so for every room call, and pings only main.
func TestNegotiationWithRev0Relay(t *testing.T) {
	fr := startFake(t, 0)
	alice := dial(t, fr.addr(), "alice", 1, fast)
	ka := collect(alice)
	if rev := alice.Rev(); rev != 0 {
		t.Fatalf("rev %d with a revision-0 relay", rev)
	}
	for _, h := range fr.frames(wire.FrameHello) {
		if h.f.Rev != wire.Rev {
			t.Errorf("hello rev %d, want %d", h.f.Rev, wire.Rev)
		}
	}
	for name, err := range map[string]error{
		"Join": alice.Join("dev", ""),
		"Part": alice.Part("dev"),
		"Msg":  func() error { _, err := alice.Msg("bob", "hi"); return err }(),
		"SendTo": func() error {
			_, err := alice.SendTo("dev", "hi")
			return err
		}(),
		"Rooms": func() error { _, err := alice.Rooms(ctx5(t)); return err }(),
		"WhoIn": func() error { _, err := alice.WhoIn(ctx5(t), "dev"); return err }(),
	} {
		if !errors.Is(err, client.ErrUnsupported) {
			t.Errorf("%s with a revision-0 relay: %v, want ErrUnsupported", name, err)
		}
	}
	// main works as before.
	if _, err := alice.Send("hello"); err != nil {
		t.Fatal(err)
	}
	ka.waitEvent(t, "the echo in main", func(e client.Event) bool { return e.Self && e.Room == wire.RoomMain && e.Text == "hello" })
	if names, err := alice.Who(ctx5(t)); err != nil || !slices.Equal(names, []string{"alice"}) {
		t.Errorf("who %q %v", names, err)
	}
	if j := alice.Joined(); len(j) != 1 || j[0].Name != wire.RoomMain {
		t.Errorf("joined %+v", j)
	}
	waitFor(t, 5*time.Second, "two heartbeats", func() bool { return len(fr.frames(wire.FramePing)) >= 2 })
	for _, g := range fr.frames("") {
		if g.f.Room != "" && g.f.Room != wire.RoomMain {
			t.Errorf("sent a revision-0 relay %+v", g.f)
		}
		switch g.f.T {
		case wire.FrameJoin, wire.FramePart, wire.FrameMsg, wire.FrameRooms:
			t.Errorf("sent a revision-0 relay %s", g.f.T)
		}
	}
}

// Join, chat in a room and in main, refusals, part, and the lists.
func TestRoomsJoinChatPart(t *testing.T) {
	fr := startFake(t, 1)
	fr.setRoom("dev", "builds and 测试", "", 0)
	fr.setRoom("secret", "", "k", 0)
	alice := dial(t, fr.addr(), "alice", 1, fast)
	ka := collect(alice)
	bob := dial(t, fr.addr(), "bob", 2, fast)
	kb := collect(bob)
	if alice.Rev() != 1 {
		t.Fatalf("rev %d", alice.Rev())
	}
	if err := alice.Join("dev", ""); err != nil {
		t.Fatal(err)
	}
	j := ka.waitEvent(t, "alice's joined", isType(client.EventJoined, "dev"))
	if j.Topic != "builds and 测试" {
		t.Errorf("joined %+v: want the topic", j)
	}
	if got := j.Format("en"); got != "you joined dev (topic: builds and 测试)" {
		t.Errorf("joined reads %q", got)
	}
	ka.waitEvent(t, "alice's own join event in dev", func(e client.Event) bool {
		return e.Type == client.EventJoin && e.Room == "dev" && e.From == "alice" && e.Seq == 1
	})
	if err := bob.Join("DEV", ""); err != nil { // the same room
		t.Fatal(err)
	}
	kb.waitEvent(t, "bob's joined", isType(client.EventJoined, "dev"))
	ka.waitEvent(t, "bob's join at alice", func(e client.Event) bool {
		return e.Type == client.EventJoin && e.Room == "dev" && e.From == "bob"
	})
	if _, err := alice.SendTo("dev", "in dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send("in main"); err != nil {
		t.Fatal(err)
	}
	kb.waitEvent(t, "alice's dev chat at bob", chatIn("dev", "in dev"))
	kb.waitEvent(t, "alice's main chat at bob", chatIn(wire.RoomMain, "in main"))
	if e := ka.waitEvent(t, "alice's echo", chatIn("dev", "in dev")); !e.Self {
		t.Errorf("echo %+v not Self", e)
	}

	// A refused join ends with an error event naming the room and the
	// code; a message queued for the room meanwhile is dropped, reported.
	// (The relay ignores the joins until the message is queued.)
	var queued atomic.Bool
	fr.setHook(func(_ *fakeSession, f *wire.Frame) bool {
		return f.T == wire.FrameJoin && f.Room == "secret" && !queued.Load()
	})
	if err := alice.Join("secret", "wrong"); err != nil {
		t.Fatal(err)
	}
	id, err := alice.SendTo("secret", "waits for the join")
	if err != nil {
		t.Fatal(err)
	}
	queued.Store(true)
	e := ka.waitEvent(t, "the refusal", func(e client.Event) bool { return e.Type == client.EventError && e.ID == 0 && e.Room == "secret" })
	if e.Code != wire.CodeBadKey {
		t.Errorf("refusal %+v", e)
	}
	ka.waitEvent(t, "the dropped message", func(e client.Event) bool { return e.Type == client.EventError && e.ID == id })
	if err := alice.Flush(ctx5(t)); err != nil {
		t.Errorf("flush after the refusal: %v", err)
	}
	if err := alice.Join("secret", "k"); err != nil {
		t.Fatal(err)
	}
	ka.waitEvent(t, "joined with the key", isType(client.EventJoined, "secret"))
	if got := joinedNames(alice); !slices.Equal(got, []string{"main", "dev", "secret"}) {
		t.Errorf("joined %q", got)
	}

	// Lists: several members frames make one answer.
	carol := dial(t, fr.addr(), "carol", 3, fast)
	if err := carol.Join("dev", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "carol in dev", func() bool { return len(fr.members("dev")) == 3 })
	if names, err := bob.WhoIn(ctx5(t), "Dev"); err != nil || !slices.Equal(names, []string{"alice", "bob", "carol"}) {
		t.Errorf("who in dev: %q %v", names, err)
	}
	var re *client.RelayError
	if _, err := bob.WhoIn(ctx5(t), "secret"); !errors.As(err, &re) || re.Room != "secret" {
		t.Errorf("who in a locked room: %v", err)
	}
	rooms, err := bob.Rooms(ctx5(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []client.RoomInfo{{Name: "dev", Count: 3, Topic: "builds and 测试"}, {Name: "main", Count: 3}, {Name: "secret", Count: 1, Locked: true}}
	if !slices.Equal(rooms, want) {
		t.Errorf("rooms %+v, want %+v", rooms, want)
	}
	if err := alice.Join("bad name", ""); !errors.Is(err, wire.ErrRoomInvalid) {
		t.Errorf("join of an invalid name: %v", err)
	}
	if err := alice.Join("@x", ""); !errors.Is(err, wire.ErrRoomInvalid) {
		t.Errorf("join of an inbox-like name: %v", err)
	}

	// Part: parted, the others see a part (not a kick), nothing more from dev.
	if err := alice.Part("dev"); err != nil {
		t.Fatal(err)
	}
	ka.waitEvent(t, "alice's parted", isType(client.EventParted, "dev"))
	l := kb.waitEvent(t, "alice's part at bob", func(e client.Event) bool {
		return e.Type == client.EventLeave && e.Room == "dev" && e.From == "alice"
	})
	if got := l.Format("en"); got != "alice left the chat room" {
		t.Errorf("part reads %q", got)
	}
	if _, err := alice.SendTo("dev", "gone"); !errors.Is(err, client.ErrNotInRoom) {
		t.Errorf("send after part: %v", err)
	}
	if err := alice.Part("dev"); !errors.Is(err, client.ErrNotInRoom) && err != nil {
		t.Errorf("part again: %v", err)
	}
	bob.SendTo("dev", "after alice left")
	kb.waitEvent(t, "bob's echo", chatIn("dev", "after alice left"))
	bob.Send("sync")
	ka.waitEvent(t, "bob's main chat", chatIn(wire.RoomMain, "sync"))
	if n := ka.count(chatIn("dev", "after alice left")); n != 0 {
		t.Errorf("alice got a dev chat after parting")
	}
	for _, g := range fr.frames(wire.FramePing) {
		if g.from == "alice" && g.f.Room == "dev" && g.dg > lastFrame(fr, "alice", wire.FramePart).dg {
			t.Errorf("alice pinged dev after parting")
		}
	}
}

func joinedNames(c *client.Client) []string {
	var out []string
	for _, j := range c.Joined() {
		out = append(out, j.Name)
	}
	return out
}

func lastFrame(fr *fakeRelay, from, typ string) fakeGot {
	var last fakeGot
	for _, g := range fr.frames(typ) {
		if g.from == from {
			last = g
		}
	}
	return last
}

// pairInDev logs alice and bob in and has both join dev; alice has seen
// bob's join there.
func pairInDev(t *testing.T, fr *fakeRelay) (alice *client.Client, ka *collector, bob *client.Client) {
	t.Helper()
	alice = dial(t, fr.addr(), "alice", 1, fast)
	ka = collect(alice)
	bob = dial(t, fr.addr(), "bob", 2, fast)
	for _, c := range []*client.Client{alice, bob} {
		if err := c.Join("dev", ""); err != nil {
			t.Fatal(err)
		}
	}
	ka.waitEvent(t, "bob in dev", func(e client.Event) bool { return e.Type == client.EventJoin && e.Room == "dev" && e.From == "bob" })
	return alice, ka, bob
}

// Each room has its own sequence: a gap in one is repaired with a repair
// naming that room, and does not hold back the others.
func TestRoomRepairIsPerRoom(t *testing.T) {
	fr := startFake(t, 1)
	_, ka, bob := pairInDev(t, fr)
	// The first delivery of bob's first dev chat to alice is lost.
	lost := false
	fr.setDrop(func(to string, f *wire.Frame) bool {
		if to == "alice" && f.T == wire.FrameChat && f.Room == "dev" && f.Text == "d1" && !lost {
			lost = true
			return true
		}
		return false
	})
	for _, text := range []string{"d1", "d2", "d3"} {
		bob.SendTo("dev", text)
	}
	bob.Send("m1")
	ka.waitEvent(t, "m1 in main", chatIn(wire.RoomMain, "m1"))
	ka.waitEvent(t, "d3 in dev", chatIn("dev", "d3"))
	var dev []string
	for _, e := range ka.events() {
		if e.Type == client.EventChat && e.Room == "dev" {
			dev = append(dev, e.Text)
		}
	}
	if !slices.Equal(dev, []string{"d1", "d2", "d3"}) {
		t.Errorf("dev chats %q, want d1 d2 d3 once each in order", dev)
	}
	var repairs []wire.Frame
	for _, g := range fr.frames(wire.FrameRepair) {
		if g.from == "alice" {
			repairs = append(repairs, g.f)
		}
	}
	if len(repairs) == 0 {
		t.Fatal("no repair sent")
	}
	for _, r := range repairs {
		if r.Room != "dev" || r.FromSeq != 3 || r.ToSeq != 3 {
			t.Errorf("repair %+v, want dev 3..3", r)
		}
	}
}

// Every heartbeat pings every room and the inbox, each with its own last,
// several pings to a datagram, never more than wire.MaxFramesPerDatagram.
func TestPingsEveryRoom(t *testing.T) {
	fr := startFake(t, 1)
	alice := dial(t, fr.addr(), "alice", 1, fast, func(c *client.Config) { c.MaxDatagram = 60000 })
	ka := collect(alice)
	const n = 70
	for i := range n {
		if err := alice.Join(fmt.Sprintf("r%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "every join answered", func() bool {
		return ka.count(func(e client.Event) bool { return e.Type == client.EventJoined }) == n
	})
	fr.event("r7", wire.Frame{T: wire.FrameNotice, Text: "hello r7"})
	ka.waitEvent(t, "the notice", func(e client.Event) bool { return e.Type == client.EventNotice && e.Room == "r7" })
	// The next full heartbeat after the notice.
	start := len(fr.frames(""))
	var beat map[string]uint64
	waitFor(t, 5*time.Second, "a heartbeat pinging every room", func() bool {
		all := fr.frames("")[start:]
		pings := map[int]map[string]uint64{} // datagram -> room -> last
		sizes := map[int]int{}
		for _, g := range all {
			sizes[g.dg]++
			if g.f.T == wire.FramePing {
				if pings[g.dg] == nil {
					pings[g.dg] = map[string]uint64{}
				}
				pings[g.dg][g.f.Room] = g.f.Last
			}
		}
		for dg, s := range sizes {
			if s > wire.MaxFramesPerDatagram {
				t.Fatalf("datagram %d has %d frames", dg, s)
			}
		}
		// A heartbeat is a run of consecutive datagrams of pings.
		dgs := make([]int, 0, len(pings))
		for dg := range pings {
			dgs = append(dgs, dg)
		}
		slices.Sort(dgs)
		for i := range dgs {
			beat = map[string]uint64{}
			for j := i; j < len(dgs) && dgs[j] == dgs[i]+(j-i); j++ {
				for room, last := range pings[dgs[j]] {
					beat[room] = last
				}
			}
			if len(beat) == n+2 {
				return true
			}
		}
		return false
	})
	for room, last := range beat {
		want := uint64(1) // our own join
		switch room {
		case "r7":
			want = 2
		case wire.RoomMain:
			want = 1
		case wire.Inbox:
			want = 0
		}
		if last != want {
			t.Errorf("ping %s last %d, want %d", room, last, want)
		}
	}
}

// Direct messages: sent with msg, echoed in our own inbox, received in
// the recipient's, repaired there like room events; refusals end the
// retransmission and name the message.
func TestDirectMessages(t *testing.T) {
	fr := startFake(t, 1)
	alice := dial(t, fr.addr(), "alice", 1, fast)
	ka := collect(alice)
	bob := dial(t, fr.addr(), "bob", 2, fast)
	kb := collect(bob)
	// bob's first copy of alice's first dm is lost: his inbox repairs it.
	lost := false
	fr.setDrop(func(to string, f *wire.Frame) bool {
		if to == "bob" && f.T == wire.FrameDM && f.Text == "psst" && !lost {
			lost = true
			return true
		}
		return false
	})
	id, err := alice.Msg("bob", "psst")
	if err != nil {
		t.Fatal(err)
	}
	alice.Msg("bob", "二")
	e := kb.waitEvent(t, "the dm at bob", func(e client.Event) bool { return e.Type == client.EventDM && e.Text == "psst" })
	if e.From != "alice" || e.To != "bob" || e.Room != wire.Inbox || e.Self || e.ID != id {
		t.Errorf("dm at bob %+v", e)
	}
	kb.waitEvent(t, "the second dm", func(e client.Event) bool { return e.Type == client.EventDM && e.Text == "二" })
	if got := e.Format("en"); got != "alice whispers: psst" {
		t.Errorf("dm reads %q", got)
	}
	if got := e.Format("zh"); got != "alice 悄悄对你说: psst" {
		t.Errorf("zh dm reads %q", got)
	}
	var order []string
	for _, e := range kb.events() {
		if e.Type == client.EventDM {
			order = append(order, e.Text)
		}
	}
	if !slices.Equal(order, []string{"psst", "二"}) {
		t.Errorf("bob's dms %q", order)
	}
	repaired := false
	for _, g := range fr.frames(wire.FrameRepair) {
		repaired = repaired || (g.from == "bob" && g.f.Room == wire.Inbox)
	}
	if !repaired {
		t.Error("bob did not repair his inbox")
	}
	echo := ka.waitEvent(t, "alice's echo", func(e client.Event) bool { return e.Type == client.EventDM && e.Text == "psst" })
	if !echo.Self || echo.To != "bob" || echo.Format("en") != "you whisper to bob: psst" {
		t.Errorf("echo %+v %q", echo, echo.Format("en"))
	}
	if err := alice.Flush(ctx5(t)); err != nil {
		t.Errorf("flush: %v", err)
	}

	// Refusals: nobody of that name, and a revision-0 recipient.
	carol := rawHello(t, fr, "carol")
	defer carol.Close()
	id1, _ := alice.Msg("nobody", "hello?")
	id2, _ := alice.Msg("carol", "hello?")
	for _, want := range []struct {
		id       uint64
		to, code string
	}{{id1, "nobody", wire.CodeNoSuchMember}, {id2, "carol", wire.CodeUnsupported}} {
		e := ka.waitEvent(t, "the refusal of "+want.to, func(e client.Event) bool { return e.Type == client.EventError && e.ID == want.id })
		if e.Code != want.code || e.To != want.to {
			t.Errorf("refusal %+v, want %s to %s", e, want.code, want.to)
		}
	}
	// Refused for good: nothing waits, nothing is sent again.
	if err := alice.Flush(ctx5(t)); err != nil {
		t.Errorf("flush after refusals: %v", err)
	}
	if _, err := alice.Msg("two words", "x"); !errors.Is(err, wire.ErrNameInvalid) {
		t.Errorf("msg to an invalid name: %v", err)
	}
	// Ids are one sequence for chats and msgs.
	cid, _ := alice.Send("chat")
	if cid != id2+1 {
		t.Errorf("chat id %d after msg id %d", cid, id2)
	}
}

// rawHello logs in as a revision-0 client: a hello without rev.
func rawHello(t *testing.T, fr *fakeRelay, name string) *net.UDPConn {
	t.Helper()
	ra, _ := net.ResolveUDPAddr("udp", fr.addr())
	conn, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(wire.EncodeV2(&wire.Frame{T: wire.FrameHello, Room: wire.RoomMain, Name: name}))
	waitFor(t, 5*time.Second, name+"'s session", func() bool { return fr.session(name) != nil })
	return conn
}

// After a resume the relay sends a welcome per room and the inbox; the
// client repairs each from its own last, and nothing is lost or doubled.
func TestResumeRepairsEveryRoom(t *testing.T) {
	fr := startFake(t, 1)
	alice, ka, bob := pairInDev(t, fr)
	// alice hears nothing for a while.
	fr.setDrop(func(to string, f *wire.Frame) bool { return to == "alice" })
	for i := range 5 {
		bob.Send(fmt.Sprintf("m%d", i))
		bob.SendTo("dev", fmt.Sprintf("d%d", i))
		bob.Msg("alice", fmt.Sprintf("p%d", i))
	}
	if err := bob.Flush(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	// Only repair brings what she lacks: pings get a bare pong.
	fr.set(func(fr *fakeRelay) { fr.drop, fr.noTail = nil, true })
	start := len(fr.frames(""))
	if err := alice.Rebind(); err != nil {
		t.Fatal(err)
	}
	ka.waitEvent(t, "resumed", func(e client.Event) bool { return e.Type == client.EventResumed })
	for i := range 5 {
		ka.waitEvent(t, "main", chatIn(wire.RoomMain, fmt.Sprintf("m%d", i)))
		ka.waitEvent(t, "dev", chatIn("dev", fmt.Sprintf("d%d", i)))
		ka.waitEvent(t, "dm", func(e client.Event) bool { return e.Type == client.EventDM && e.Text == fmt.Sprintf("p%d", i) })
	}
	seen := map[string]bool{}
	for _, e := range ka.events() {
		if e.IsRoomEvent() {
			k := fmt.Sprintf("%s/%d", e.Room, e.Seq)
			if seen[k] {
				t.Errorf("%s delivered twice", k)
			}
			seen[k] = true
		}
	}
	repaired := map[string]bool{}
	for _, g := range fr.frames("")[start:] {
		if g.f.T == wire.FrameRepair {
			repaired[g.f.Room] = true
		}
	}
	if !repaired["dev"] || !repaired[wire.Inbox] {
		t.Errorf("repaired %v, want dev and the inbox repaired from their last", repaired)
	}
	for _, e := range ka.events() {
		if e.Type == client.EventJoined && e.History {
			t.Errorf("%+v", e)
		}
	}
	if n := ka.count(func(e client.Event) bool { return e.Type == client.EventJoined }); n != 1 {
		t.Errorf("%d joined events, want 1: a resume is not a join", n)
	}
}

// After the relay restarts, the client logs in again and joins its rooms
// again by itself, quietly; its inbox is the new session's.
func TestRestartRejoinsRooms(t *testing.T) {
	fr := startFake(t, 1)
	fr.setRoom("dev", "", "k", 0)
	alice := dial(t, fr.addr(), "alice", 1, fast)
	ka := collect(alice)
	alice.Join("dev", "k")
	ka.waitEvent(t, "joined", isType(client.EventJoined, "dev"))
	alice.Msg("alice", "to myself")
	ka.waitEvent(t, "a dm to self", func(e client.Event) bool { return e.Type == client.EventDM })
	fr.send("alice", &wire.Frame{T: wire.FrameRestart, Room: wire.RoomMain, Epoch: "e1"})
	fr.restart("e2")
	ka.waitEvent(t, "restarted", func(e client.Event) bool { return e.Type == client.EventRestarted })
	waitFor(t, 5*time.Second, "alice back in dev", func() bool { return slices.Contains(fr.members("dev"), "alice") })
	// Late welcomes from before the restart change nothing.
	fr.send("alice",
		&wire.Frame{T: wire.FrameWelcome, Room: wire.RoomMain, Epoch: "e1", Seq: 99},
		&wire.Frame{T: wire.FrameWelcome, Room: "dev", Epoch: "e1-dev", Seq: 99})
	alice.Send("main after")
	ka.waitEvent(t, "the echo in main", chatIn(wire.RoomMain, "main after"))
	if _, err := alice.SendTo("dev", "back"); err != nil {
		t.Fatal(err)
	}
	e := ka.waitEvent(t, "the echo in dev", chatIn("dev", "back"))
	if e.Epoch != "e2-dev" {
		t.Errorf("echo %+v: want the new epoch", e)
	}
	alice.Msg("alice", "again")
	ka.waitEvent(t, "a dm in the new inbox", func(e client.Event) bool { return e.Type == client.EventDM && e.Text == "again" && e.Seq == 1 })
	if n := ka.count(func(e client.Event) bool { return e.Type == client.EventJoined }); n != 1 {
		t.Errorf("%d joined events: a re-join after a restart is quiet", n)
	}
	if j := alice.Joined(); len(j) != 2 || j[1].Name != "dev" || j[1].Joining {
		t.Errorf("joined %+v", j)
	}
}

// aliceIn logs alice in and joins rooms, waiting for each to be joined.
func aliceIn(t *testing.T, fr *fakeRelay, rooms ...string) (*client.Client, *collector) {
	t.Helper()
	alice := dial(t, fr.addr(), "alice", 1, fast)
	ka := collect(alice)
	for _, r := range rooms {
		if err := alice.Join(r, ""); err != nil {
			t.Fatal(err)
		}
		ka.waitEvent(t, "joined "+r, isType(client.EventJoined, r))
	}
	return alice, ka
}

// Removed from one room (a leave of our own with a reason), or told we
// are not in it: that room is gone, the session goes on.
func TestRoomLost(t *testing.T) {
	fr := startFake(t, 1)
	alice, ka := aliceIn(t, fr, "dev", "ops")
	fr.event("dev", wire.Frame{T: wire.FrameLeave, From: "alice", Reason: "spam"})
	e := ka.waitEvent(t, "parted dev", isType(client.EventParted, "dev"))
	if e.Code != "removed" || e.Reason != "spam" {
		t.Errorf("parted %+v", e)
	}
	// The relay forgets alice in ops without a word: her ping finds out.
	fr.mu.Lock()
	delete(fr.rooms["ops"].members, "alice")
	fr.mu.Unlock()
	e = ka.waitEvent(t, "parted ops", isType(client.EventParted, "ops"))
	if e.Code != wire.CodeNotInRoom {
		t.Errorf("parted %+v", e)
	}
	if _, err := alice.Send("still here"); err != nil {
		t.Fatal(err)
	}
	ka.waitEvent(t, "the echo in main", chatIn(wire.RoomMain, "still here"))
	if got := joinedNames(alice); !slices.Equal(got, []string{"main"}) {
		t.Errorf("joined %q", got)
	}
}

// A topic change is a notice with the topic; the room keeps it.
func TestTopicNotice(t *testing.T) {
	fr := startFake(t, 1)
	alice, ka := aliceIn(t, fr, "dev")
	fr.event("dev", wire.Frame{T: wire.FrameNotice, Text: "the topic is now: release 2.0", Topic: "release 2.0"})
	e := ka.waitEvent(t, "the notice", isType(client.EventNotice, "dev"))
	if e.Topic != "release 2.0" || e.Format("en") != "Admin notice: the topic is now: release 2.0" {
		t.Errorf("notice %+v", e)
	}
	if j := alice.Joined(); j[1].Topic != "release 2.0" {
		t.Errorf("joined %+v", j)
	}
	// Joining again says so, with the topic: a user interface switches.
	alice.Join("dev", "")
	waitFor(t, 5*time.Second, "joined again", func() bool {
		return ka.count(func(e client.Event) bool { return e.Type == client.EventJoined && e.Topic == "release 2.0" }) == 1
	})
}

// Big rooms announce joins and leaves in batches.
func TestBatchedAnnouncements(t *testing.T) {
	fr := startFake(t, 1)
	fr.set(func(fr *fakeRelay) { fr.batch = true })
	alice := dial(t, fr.addr(), "alice", 1, fast)
	ka := collect(alice)
	e := ka.waitEvent(t, "the batch", func(e client.Event) bool { return e.Type == client.EventJoin })
	if !e.Batched() || e.Count != 10 || !slices.Equal(e.Names, []string{"alice", "x1", "x2"}) {
		t.Errorf("batch %+v", e)
	}
	if got := e.Format("en"); got != "alice, x1, x2 and 7 others joined the chat room" {
		t.Errorf("batch reads %q", got)
	}
	// Our own name first in a batch is not our own kick or timeout.
	if _, err := alice.Send("alive"); err != nil {
		t.Fatal(err)
	}
	ka.waitEvent(t, "the echo", chatIn(wire.RoomMain, "alive"))
}

func TestFormatRevision1(t *testing.T) {
	join := client.Event{Type: client.EventJoin, From: "alice", Names: []string{"alice", "bob", "carol"}, Count: 100}
	leave := client.Event{Type: client.EventLeave, From: "alice", Names: []string{"alice", "bob"}, Count: 5}
	for _, tt := range []struct {
		e      client.Event
		en, zh string
	}{
		{join, "alice, bob, carol and 97 others joined the chat room", "alice, bob, carol 等 100 人进入聊天室"},
		{leave, "alice, bob and 3 others left the chat room", "alice, bob 等 5 人退出了聊天室"},
		{client.Event{Type: client.EventLeave, From: "a", Names: []string{"a", "b"}, Count: 3}, "a, b and 1 other left the chat room", "a, b 等 3 人退出了聊天室"},
		{client.Event{Type: client.EventJoin, From: "a", Names: []string{"a", "b", "c"}, Count: 3}, "a, b and c joined the chat room", "a, b, c 等 3 人进入聊天室"},
		{client.Event{Type: client.EventJoin, From: "a", Names: []string{"a"}, Count: 1}, "a joined the chat room", "a 进入聊天室"},
		{client.Event{Type: client.EventLeave, From: "a", Reason: "part"}, "a left the chat room", "a 退出了聊天室"},
		{client.Event{Type: client.EventDM, From: "alice", To: "bob", Text: "hi"}, "alice whispers: hi", "alice 悄悄对你说: hi"},
		{client.Event{Type: client.EventDM, From: "bob", To: "alice", Text: "hi", Self: true}, "you whisper to alice: hi", "你悄悄对 alice 说: hi"},
		{client.Event{Type: client.EventJoined, Room: "dev", Topic: "t"}, "you joined dev (topic: t)", "你进入了聊天室 dev (话题: t)"},
		{client.Event{Type: client.EventParted, Room: "dev"}, "you left dev", "你离开了聊天室 dev"},
		{client.Event{Type: client.EventParted, Room: "dev", Code: "removed", Reason: "spam"}, "you left dev: spam", "你离开了聊天室 dev: spam"},
	} {
		if got := tt.e.Format("en"); got != tt.en {
			t.Errorf("en %q, want %q", got, tt.en)
		}
		if got := tt.e.Format("zh"); got != tt.zh {
			t.Errorf("zh %q, want %q", got, tt.zh)
		}
	}
	e := client.Event{Type: client.EventError, Code: wire.CodeBadKey, Reason: "wrong key", Room: "dev"}
	if got := e.String(); got != "relay error bad_key: wrong key (room dev)" {
		t.Errorf("error reads %q", got)
	}
}
