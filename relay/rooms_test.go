package relay_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// login1 logs a client of the newest revision in: the welcome for main
// (with its rev), main's backlog, the inbox's welcome, then its own join in
// main.
func (c *v2c) login1(name string) (main, inbox wire.Frame) {
	c.t.Helper()
	return c.loginRev(name, wire.Rev)
}

// loginRev is login1 for a client of revision rev (1 or more).
func (c *v2c) loginRev(name string, rev uint64) (main, inbox wire.Frame) {
	c.t.Helper()
	pad := strings.Repeat("p", 256)
	c.sendFrames(&wire.Frame{T: wire.FrameHello, Room: wire.RoomMain, Name: name, Rev: rev, Pad: pad})
	retry := c.expectT(wire.FrameRetry)
	c.sendFrames(&wire.Frame{T: wire.FrameHello, Room: wire.RoomMain, Name: name, Rev: rev, Cookie: retry.Cookie})
	main = c.expectT(wire.FrameWelcome)
	if main.Rev != rev || main.Room != wire.RoomMain {
		c.t.Fatalf("welcome %+v, want main at revision %d", main, rev)
	}
	c.token, c.name = main.Token, main.Name
	for {
		f := c.next()
		if f.History {
			continue
		}
		if f.T != wire.FrameWelcome || f.Room != wire.Inbox {
			c.t.Fatalf("after main's backlog: %+v, want the inbox's welcome", f)
		}
		inbox = f
		break
	}
	c.settle()
	return main, inbox
}

// joinRoom joins room and reads the welcome, the backlog and its own join.
func (c *v2c) joinRoom(room, key string) (welcome, join wire.Frame) {
	c.t.Helper()
	c.sendFrames(&wire.Frame{T: wire.FrameJoin, Room: room, Key: key})
	welcome = c.expectT(wire.FrameWelcome)
	for {
		f := c.next()
		if f.History {
			continue
		}
		if f.T != wire.FrameJoin || f.From != c.name || f.Room != welcome.Room {
			c.t.Fatalf("joining %s: %+v, want our own join", room, f)
		}
		return welcome, f
	}
}

// expectError reads frames until an error frame and checks its code.
func (c *v2c) expectError(code string) wire.Frame {
	c.t.Helper()
	f := c.expectT(wire.FrameError)
	if f.Code != code {
		c.t.Fatalf("error %+v, want code %s", f, code)
	}
	return f
}

func TestRoomsJoinChatPartAndList(t *testing.T) {
	r := relaytest.Start(t)
	carol := dial(t, r).login("carol") // classic: main only
	carol.sync("carol")
	alice, bob := dialV2(t, r), dialV2(t, r)
	alice.login1("alice")
	carol.expect("alice joined the chat room")
	bob.login1("bob")
	carol.expect("bob joined the chat room")
	alice.expectT(wire.FrameJoin) // bob's, in main

	w, j := alice.joinRoom("dev", "")
	if w.Room != "dev" || w.Seq != 0 || w.Epoch == "" || j.Seq != 1 || j.Epoch != w.Epoch {
		t.Fatalf("welcome %+v, join %+v: a new room starts at seq 1", w, j)
	}
	// One room by its compare key, shown as its creator named it.
	w2, j2 := bob.joinRoom("ＤＥＶ", "")
	if w2.Room != "dev" || w2.Seq != 1 || j2.Seq != 2 {
		t.Fatalf("bob's welcome %+v and join %+v", w2, j2)
	}
	if f := alice.expectT(wire.FrameJoin); f.From != "bob" || f.Room != "dev" || f.Seq != 2 {
		t.Fatalf("alice saw %+v", f)
	}

	// A chat in dev reaches dev only.
	alice.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "dev", ID: 1, Text: "in dev 中文"})
	for _, c := range []*v2c{alice, bob} {
		if f := c.expectT(wire.FrameChat); f.Room != "dev" || f.Text != "in dev 中文" || f.From != "alice" || f.Seq != 3 {
			t.Fatalf("%s got %+v", c.name, f)
		}
	}
	alice.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "main", ID: 2, Text: "in main"})
	carol.expect("alice says: in main") // and not the dev chat before it
	if f := bob.expectT(wire.FrameChat); f.Room != "main" || f.Text != "in main" {
		t.Fatalf("bob got %+v", f)
	}
	alice.expectT(wire.FrameChat) // her echo in main

	// A frame for a room one is not in is refused with its id.
	alice.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "elsewhere", ID: 3, Text: "x"})
	if e := alice.expectError(wire.CodeNotInRoom); e.ID != 3 {
		t.Fatalf("error %+v, want id 3", e)
	}

	// The room list, sorted, with counts.
	bob.sendFrames(&wire.Frame{T: wire.FrameRooms})
	dev, main := bob.expectT(wire.FrameRoom), bob.expectT(wire.FrameRoom)
	if dev.Room != "dev" || dev.Count != 2 || !dev.More || main.Room != "main" || main.Count != 3 || main.More {
		t.Fatalf("rooms %+v %+v", dev, main)
	}
	// who in a room.
	bob.sendFrames(&wire.Frame{T: wire.FrameWho, Room: "dev"})
	if m := bob.expectT(wire.FrameMembers); m.Room != "dev" || strings.Join(m.Names, ",") != "alice,bob" {
		t.Fatalf("who dev: %+v", m)
	}

	// part: parted to the leaver, leave to the others; again: parted again.
	bob.sendFrames(&wire.Frame{T: wire.FramePart, Room: "dev"})
	if f := bob.expectT(wire.FrameParted); f.Room != "dev" {
		t.Fatalf("parted %+v", f)
	}
	if f := alice.expectT(wire.FrameLeave); f.From != "bob" || f.Room != "dev" || f.Reason != "part" {
		t.Fatalf("leave %+v", f)
	}
	bob.sendFrames(&wire.Frame{T: wire.FramePart, Room: "dev"})
	bob.expectT(wire.FrameParted)

	// The last member out removes the room; main stays.
	alice.sendFrames(&wire.Frame{T: wire.FramePart, Room: "dev"})
	alice.expectT(wire.FrameParted)
	eventually(t, "dev removed", func() bool {
		rooms := r.Server.Rooms()
		return len(rooms) == 1 && rooms[0].Name == "main"
	})
}

// classicAndTwoV2 starts a relay with carol (classic) then alice and bob
// (revision 1) logged in; alice has seen bob's join, carol has not read
// theirs yet.
func classicAndTwoV2(t *testing.T) (r *relaytest.Relay, rec *recorder, carol *client, alice, bob *v2c) {
	t.Helper()
	rec = newRecorder()
	r = relaytest.Start(t, func(c *relay.Config) { c.Observer = rec })
	carol = dial(t, r).login("carol")
	carol.sync("carol")
	alice, bob = dialV2(t, r), dialV2(t, r)
	alice.login1("alice")
	bob.login1("bob")
	alice.expectT(wire.FrameJoin) // bob's
	return r, rec, carol, alice, bob
}

func TestDirectMessages(t *testing.T) {
	r, rec, carol, alice, bob := classicAndTwoV2(t)
	old := dialV2(t, r) // revision 0: no inbox
	old.login("old")
	old.settle()
	alice.expectT(wire.FrameJoin)
	bob.expectT(wire.FrameJoin)
	for range 3 {
		carol.recv() // the three joins
	}

	alice.sendFrames(&wire.Frame{T: wire.FrameMsg, To: "BOB", ID: 1, Text: "psst 悄悄话"})
	got := bob.expectT(wire.FrameDM)
	if got.Room != wire.Inbox || got.Seq != 1 || got.From != "alice" || got.To != "bob" || got.Text != "psst 悄悄话" {
		t.Fatalf("bob's dm %+v", got)
	}
	echo := alice.expectT(wire.FrameDM)
	if echo.Room != wire.Inbox || echo.Seq != 1 || echo.ID != 1 || echo.From != "alice" || echo.To != "bob" {
		t.Fatalf("alice's echo %+v", echo)
	}
	// A retransmission is acknowledged, not sent again.
	alice.sendFrames(&wire.Frame{T: wire.FrameMsg, To: "bob", ID: 1, Text: "psst 悄悄话"})
	if ack := alice.expectT(wire.FrameAck); ack.ID != 1 || ack.Seq != 1 || ack.Room != wire.Inbox {
		t.Fatalf("ack %+v", ack)
	}
	// A classic recipient gets one line.
	alice.sendFrames(&wire.Frame{T: wire.FrameMsg, To: "carol", ID: 2, Text: "hi carol"})
	carol.expect("alice whispers: hi carol")
	if e := alice.expectT(wire.FrameDM); e.Seq != 2 || e.To != "carol" {
		t.Fatalf("echo %+v", e)
	}
	// Nobody, and a revision-0 client, are refused with the message's id.
	alice.sendFrames(&wire.Frame{T: wire.FrameMsg, To: "nobody", ID: 3, Text: "x"})
	if e := alice.expectError(wire.CodeNoSuchMember); e.ID != 3 {
		t.Fatalf("%+v", e)
	}
	alice.sendFrames(&wire.Frame{T: wire.FrameMsg, To: "old", ID: 4, Text: "x"})
	if e := alice.expectError(wire.CodeUnsupported); e.ID != 4 {
		t.Fatalf("%+v", e)
	}
	// The inbox repairs like a room.
	bob.sendFrames(&wire.Frame{T: wire.FrameRepair, Room: wire.Inbox, FromSeq: 1, ToSeq: 1})
	if f := bob.expectT(wire.FrameDM); f.Seq != 1 || f.Text != "psst 悄悄话" {
		t.Fatalf("repaired %+v", f)
	}
	bob.sendFrames(&wire.Frame{T: wire.FramePing, Room: wire.Inbox, Last: 1})
	if p := bob.expectT(wire.FramePong); p.Room != wire.Inbox || p.Seq != 1 {
		t.Fatalf("pong %+v", p)
	}
	// Nobody else saw any of it: the next thing old and carol get is a
	// main chat.
	bob.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "main", ID: 1, Text: "public"})
	carol.expect("bob says: public")
	if f := old.expectT(wire.FrameChat); f.Text != "public" {
		t.Fatalf("old got %+v", f)
	}
	if n := rec.kind(relay.KindDM); n != 3 { // bob's inbox, alice's twice; carol's line is no event
		t.Fatalf("%d dm broadcasts, want 3", n)
	}
}

func TestRoomLimitsKeysAndSettings(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) {
		c.MaxRooms = 4
		c.MaxRoomsPerMember = 3
		c.Rooms = []relay.RoomSettings{{Name: "vault", Key: "s3cret", Topic: "keys only"}, {Name: "tiny", Limit: 1}}
	})
	alice, bob := dialV2(t, r), dialV2(t, r)
	alice.login1("alice")
	bob.login1("bob")
	alice.expectT(wire.FrameJoin)

	alice.sendFrames(&wire.Frame{T: wire.FrameJoin, Room: "vault"})
	alice.expectError(wire.CodeBadKey)
	w, _ := alice.joinRoom("vault", "s3cret")
	if w.Topic != "keys only" {
		t.Fatalf("welcome %+v, want the topic", w)
	}
	alice.sendFrames(&wire.Frame{T: wire.FrameJoin, Room: "a b"})
	alice.expectError(wire.CodeRoomInvalid)
	alice.sendFrames(&wire.Frame{T: wire.FrameJoin, Room: "@me"})
	alice.expectError(wire.CodeRoomInvalid)

	alice.joinRoom("tiny", "")
	bob.sendFrames(&wire.Frame{T: wire.FrameJoin, Room: "tiny"})
	bob.expectError(wire.CodeRoomFull)
	// main, vault and tiny: alice is in three rooms.
	alice.sendFrames(&wire.Frame{T: wire.FrameJoin, Room: "more"})
	alice.expectError(wire.CodeTooManyRooms)
	// main, vault, tiny and one more: the relay is full.
	bob.joinRoom("fourth", "")
	bob.sendFrames(&wire.Frame{T: wire.FrameJoin, Room: "fifth"})
	bob.expectError(wire.CodeRoomsFull)
	// Configured rooms stay when empty; a locked one hides its members.
	bob.sendFrames(&wire.Frame{T: wire.FrameWho, Room: "vault"})
	bob.expectError(wire.CodeNotInRoom)
	alice.sendFrames(&wire.Frame{T: wire.FramePart, Room: "vault"})
	alice.expectT(wire.FrameParted)
	found := false
	for _, ri := range r.Server.Rooms() {
		if ri.Name == "vault" && ri.Members == 0 && ri.Locked && ri.Configured {
			found = true
		}
	}
	if !found {
		t.Fatalf("rooms %+v: vault must stay, empty and locked", r.Server.Rooms())
	}
}

func TestRepeatedJoinGetsTheSameWelcome(t *testing.T) {
	r := relaytest.Start(t)
	alice, bob := dialV2(t, r), dialV2(t, r)
	alice.login1("alice")
	bob.login1("bob")
	alice.expectT(wire.FrameJoin)
	w, _ := alice.joinRoom("dev", "")
	bob.joinRoom("dev", "")
	alice.expectT(wire.FrameJoin)
	alice.sendFrames(&wire.Frame{T: wire.FrameJoin, Room: "dev"})
	again := alice.expectT(wire.FrameWelcome)
	if again.Seq != w.Seq || again.Epoch != w.Epoch {
		t.Fatalf("repeat welcome %+v, want %+v", again, w)
	}
	// Only history follows, then nothing new for bob: his next frame is a chat.
	alice.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "dev", ID: 1, Text: "after"})
	if f := bob.expectT(wire.FrameChat); f.Text != "after" {
		t.Fatalf("bob got %+v", f)
	}
}

func TestBigRoomAnnouncesInBatches(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) {
		c.AnnounceLimit = 3
		c.SweepEvery = 20 * time.Millisecond
	})
	watcher := dial(t, r).login("watcher")
	watcher.sync("watcher")
	// Up to the limit, each join is announced on its own, as today.
	for _, n := range []string{"m1", "m2", "m3"} {
		dial(t, r).login(n)
		watcher.expect(n + " joined the chat room")
	}
	for i := 4; i <= 10; i++ {
		dial(t, r).login("m" + strconv.Itoa(i))
	}
	// The seven joins above the limit come batched: in fewer lines than
	// joins (a sweep may fall between two logins and cut the batch), each
	// line naming its joiners, or the first five and "N others".
	joined := 0
	for lines := 1; joined < 7; lines++ {
		got := watcher.recv()
		who, ok := strings.CutSuffix(got, " joined the chat room")
		if !ok || lines >= 7 {
			t.Fatalf("line %d: watcher got %q after %d of the 7 joins, want them batched", lines, got, joined)
		}
		if rest, n, ok := cutOthers(who); ok {
			joined += n + len(strings.Split(rest, ", "))
			continue
		}
		joined += len(strings.Split(strings.ReplaceAll(who, " and ", ", "), ", "))
	}
	if joined != 7 {
		t.Fatalf("the batches named %d joins, want 7", joined)
	}
}

// cutOthers splits "a, b, c and 3 others" (or "… and 1 other") into the
// names and the count.
func cutOthers(who string) (names string, n int, ok bool) {
	i := strings.LastIndex(who, " and ")
	if i < 0 {
		return "", 0, false
	}
	tail := strings.TrimSuffix(strings.TrimSuffix(who[i+5:], " others"), " other")
	n, err := strconv.Atoi(tail)
	if err != nil || tail == who[i+5:] {
		return "", 0, false
	}
	return who[:i], n, true
}

func TestBatchWordingChinese(t *testing.T) {
	w := wire.Words(wire.LangZH)
	if got := w.Batch(true, []string{"甲", "乙"}, 100); got != "甲, 乙 等 100 人进入聊天室" {
		t.Fatalf("zh: %q", got)
	}
	e := wire.Words(wire.LangEN)
	for _, tc := range []struct {
		join  bool
		names []string
		count int
		want  string
	}{
		{false, []string{"a", "b"}, 5, "a, b and 3 others left the chat room"},
		{true, []string{"a", "b"}, 3, "a, b and 1 other joined the chat room"},
		{true, []string{"a", "b", "c"}, 3, "a, b and c joined the chat room"},
		{false, []string{"a"}, 1, "a left the chat room"},
	} {
		if got := e.Batch(tc.join, tc.names, tc.count); got != tc.want {
			t.Errorf("en %v %d: %q, want %q", tc.names, tc.count, got, tc.want)
		}
	}
}

func TestKickFromOneRoom(t *testing.T) {
	r := relaytest.Start(t)
	alice, bob := dialV2(t, r), dialV2(t, r)
	alice.login1("alice")
	bob.login1("bob")
	alice.expectT(wire.FrameJoin)
	alice.joinRoom("dev", "")
	bob.joinRoom("dev", "")
	alice.expectT(wire.FrameJoin)
	if _, err := r.Server.KickFromRoom("BOB", "dev", "off topic"); err != nil {
		t.Fatal(err)
	}
	if e := bob.expectError("removed"); e.Room != "dev" || !strings.Contains(e.Reason, "off topic") {
		t.Fatalf("bob told %+v", e)
	}
	bob.expectT(wire.FrameParted)
	if f := alice.expectT(wire.FrameLeave); f.From != "bob" || f.Room != "dev" || f.Reason != "off topic" {
		t.Fatalf("alice saw %+v", f)
	}
	// bob is still logged in and in main.
	bob.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "main", ID: 1, Text: "still here"})
	if f := alice.expectT(wire.FrameChat); f.Room != "main" || f.Text != "still here" {
		t.Fatalf("alice got %+v", f)
	}
	if _, err := r.Server.KickFromRoom("bob", "dev", ""); err != relay.ErrNoMember {
		t.Fatalf("kick again: %v, want ErrNoMember", err)
	}
	if _, err := r.Server.KickFromRoom("bob", "nowhere", ""); err != relay.ErrNoRoom {
		t.Fatalf("kick from nowhere: %v, want ErrNoRoom", err)
	}
}

// After a resume from a new address, the relay says where every room of
// the session and its inbox stand, so the client repairs each.
func TestResumeWelcomesEveryRoom(t *testing.T) {
	r := relaytest.Start(t)
	alice, bob := dialV2(t, r), dialV2(t, r)
	alice.login1("alice")
	_, inbox := bob.login1("bob")
	alice.expectT(wire.FrameJoin)
	w, _ := bob.joinRoom("dev", "")
	alice.joinRoom("dev", "")
	bob.expectT(wire.FrameJoin)
	alice.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "dev", ID: 1, Text: "while you move"})
	alice.sendFrames(&wire.Frame{T: wire.FrameMsg, To: "bob", ID: 2, Text: "and a dm"})
	alice.expectT(wire.FrameChat) // both were handled before bob moves
	alice.expectT(wire.FrameDM)

	moved := dialV2(t, r) // bob's new address
	pad := strings.Repeat("p", 256)
	moved.sendFrames(&wire.Frame{T: wire.FrameResume, Room: wire.RoomMain, Token: bob.token, Pad: pad})
	retry := moved.expectT(wire.FrameRetry)
	moved.sendFrames(&wire.Frame{T: wire.FrameResume, Room: wire.RoomMain, Token: bob.token, Last: 2, Cookie: retry.Cookie})
	seen := map[string]wire.Frame{}
	for len(seen) < 3 {
		f := moved.next()
		if f.T == wire.FrameWelcome {
			seen[f.Room] = f
		}
	}
	if d := seen["dev"]; d.Epoch != w.Epoch || d.Seq != 3 { // bob's join, alice's join, the chat
		t.Fatalf("dev welcome %+v", d)
	}
	if in := seen[wire.Inbox]; in.Epoch != inbox.Epoch || in.Seq != 1 {
		t.Fatalf("inbox welcome %+v", in)
	}
	// Repair from the new address brings what was missed.
	moved.sendFrames(&wire.Frame{T: wire.FrameRepair, Room: "dev", FromSeq: 3, ToSeq: 3},
		&wire.Frame{T: wire.FrameRepair, Room: wire.Inbox, FromSeq: 1, ToSeq: 1})
	var chat, dm bool
	for !chat || !dm {
		f := moved.next()
		chat = chat || (f.T == wire.FrameChat && f.Text == "while you move" && f.Room == "dev")
		dm = dm || (f.T == wire.FrameDM && f.Text == "and a dm")
	}
}

// A muted member's chats are refused with a reason and reach nobody: a
// room mute in that room only, a relay-wide mute everywhere, DMs included.
func TestMutedChatsReachNobody(t *testing.T) {
	r, rec, carol, alice, bob := classicAndTwoV2(t)
	carol.recv()
	carol.recv()
	alice.joinRoom("dev", "")
	bob.joinRoom("dev", "")
	alice.expectT(wire.FrameJoin)

	if _, final := admin(t, r, "mute alice --room dev"); final != relay.AdminOK {
		t.Fatalf("mute: %q", final)
	}
	alice.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "dev", ID: 1, Text: "hush"})
	if e := alice.expectError(wire.CodeMuted); e.ID != 1 || e.Reason == "" {
		t.Fatalf("%+v", e)
	}
	alice.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "main", ID: 2, Text: "main is fine"})
	if f := bob.expectT(wire.FrameChat); f.Room != "main" || f.Text != "main is fine" { // and not "hush"
		t.Fatalf("bob got %+v", f)
	}
	carol.expect("alice says: main is fine")
	alice.expectT(wire.FrameChat) // her echo

	if _, final := admin(t, r, "mute carol"); final != relay.AdminOK {
		t.Fatalf("mute: %q", final)
	}
	carol.send("C carol anyone?")
	if got := carol.recv(); !strings.Contains(got, "muted") {
		t.Fatalf("carol told %q", got)
	}
	if _, final := admin(t, r, "mute bob"); final != relay.AdminOK {
		t.Fatalf("mute: %q", final)
	}
	bob.sendFrames(&wire.Frame{T: wire.FrameMsg, To: "alice", ID: 1, Text: "psst"})
	bob.expectError(wire.CodeMuted)
	if _, final := admin(t, r, "unmute bob"); final != relay.AdminOK {
		t.Fatalf("unmute: %q", final)
	}
	bob.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "dev", ID: 2, Text: "back"})
	if f := alice.expectT(wire.FrameChat); f.Text != "back" || f.Room != "dev" { // nothing muted came first
		t.Fatalf("alice got %+v", f)
	}
	if n := rec.drop(relay.DropMuted); n != 3 {
		t.Fatalf("%d muted drops, want 3", n)
	}
}

func TestAdminRoomVerbs(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) { c.Lang = wire.LangZH })
	carol := dial(t, r).login("carol")
	carol.sync("carol")
	alice := dialV2(t, r)
	alice.login1("alice")
	carol.recv()
	alice.joinRoom("课堂", "")

	if lines, final := admin(t, r, "topic 课堂 今天讲网络"); final != relay.AdminOK || len(lines) != 1 {
		t.Fatalf("topic: %q %q", lines, final)
	}
	if f := alice.expectT(wire.FrameNotice); f.Topic != "今天讲网络" || f.Text != "话题已改为: 今天讲网络" || f.Room != "课堂" {
		t.Fatalf("topic notice %+v", f)
	}
	if _, final := admin(t, r, "notice --room 课堂 下课了"); final != relay.AdminOK {
		t.Fatalf("notice: %q", final)
	}
	if f := alice.expectT(wire.FrameNotice); f.Text != "下课了" || f.Room != "课堂" {
		t.Fatalf("notice %+v", f)
	}
	// carol (classic, in main) saw neither: her next line is main's notice.
	if _, final := admin(t, r, "notice 大家好"); final != relay.AdminOK {
		t.Fatalf("notice: %q", final)
	}
	carol.expect("管理员消息: 大家好")
	alice.expectT(wire.FrameNotice) // alice is in main too

	lines, final := admin(t, r, "rooms")
	if final != relay.AdminOK || len(lines) != 2 || lines[0] != "main\t2\t-\t" || lines[1] != "课堂\t1\tconfigured\t今天讲网络" {
		t.Fatalf("rooms: %q %q", lines, final)
	}
	lines, _ = admin(t, r, "rooms --json")
	if len(lines) != 1 || !strings.Contains(lines[0], `"name":"课堂"`) || !strings.Contains(lines[0], `"members":1`) {
		t.Fatalf("rooms --json: %q", lines)
	}
	lines, _ = admin(t, r, "who --room 课堂")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "alice\t") {
		t.Fatalf("who --room: %q", lines)
	}
	if _, final := admin(t, r, "kick alice --room 课堂 安静"); final != relay.AdminOK {
		t.Fatalf("kick --room: %q", final)
	}
	alice.expectError("removed")
	alice.expectT(wire.FrameParted)
	if _, final := admin(t, r, "kick alice --room nowhere"); !strings.HasPrefix(final, relay.AdminErrPrefix) {
		t.Fatalf("kick from nowhere: %q", final)
	}
}

// A receiver rejects a datagram of more lines than its revision reads
// (wire.MaxLines: 64 up to revision 3, 256 from 4; revision 2's context
// lines count) whole, so the relay never packs more, however small the
// events: a repair of 152 one-letter chats comes to revision 3 as several
// datagrams, each of which decodes, and to revision 4 as one.
func TestPackedDatagramsHoldAtMost64Frames(t *testing.T) {
	for _, tc := range []struct {
		rev       uint64
		decode    func([]wire.Frame, []byte) ([]wire.Frame, error)
		datagrams int // 0: several
	}{{3, wire.DecodeV2Compact, 0}, {4, wire.DecodeV2Wide, 1}} {
		t.Run("revision "+strconv.FormatUint(tc.rev, 10), func(t *testing.T) { packedRepair(t, tc.rev, tc.decode, tc.datagrams) })
	}
}

func packedRepair(t *testing.T, rev uint64, decode func([]wire.Frame, []byte) ([]wire.Frame, error), datagrams int) {
	r := relaytest.Start(t, func(c *relay.Config) { c.Flood = relay.FloodOff() })
	alice, bob := dialV2(t, r), dialV2(t, r)
	alice.loginRev("alice", rev)
	bob.login1("bob")
	alice.expectT(wire.FrameJoin)
	for i := 1; i <= 150; i++ {
		bob.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "main", ID: uint64(i), Text: "x"})
	}
	var last uint64
	for last < 152 { // alice's and bob's joins, then the 150 chats
		last = alice.expectT(wire.FrameChat).Seq
	}
	alice.sendFrames(&wire.Frame{T: wire.FrameRepair, Room: "main", FromSeq: 1, ToSeq: 152})
	got, n := 0, 0
	for got < 152 {
		d := alice.recv() // next() would fail the test on an undecodable datagram too; say why here
		n++
		// Context lines count as lines, not as events.
		fs, err := decode(nil, []byte(d))
		if err != nil {
			t.Fatalf("a repair datagram does not decode at revision %d (%v): %d lines", rev, err, strings.Count(d, "\n")-1)
		}
		got += len(fs)
	}
	switch {
	case got != 152:
		t.Fatalf("%d events repaired, want 152", got)
	case datagrams == 0 && n < 2, datagrams > 0 && n != datagrams:
		t.Fatalf("revision %d: the repair came in %d datagrams, want %d (0: several)", rev, n, datagrams)
	}
}
