package client_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/relaytest"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// Revision 1 against the real relay: rooms, direct messages, topics,
// kicks from one room and from the relay.
func TestRoomsWithRelay(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) {
		c.Rooms = []relay.RoomSettings{{Name: "ops", Topic: "on call", Key: "k"}}
	})
	addr := r.Addr.String()
	alice := dial(t, addr, "alice", 1)
	ka := collect(alice)
	bob := dial(t, addr, "bob", 2)
	kb := collect(bob)
	if alice.Rev() != wire.Rev {
		t.Fatalf("rev %d with the relay", alice.Rev())
	}
	alice.Join("dev", "")
	ka.waitEvent(t, "alice joined dev", isType(client.EventJoined, "dev"))
	bob.Join("DEV", "")
	kb.waitEvent(t, "bob joined dev", isType(client.EventJoined, "dev"))
	ka.waitEvent(t, "bob's join in dev", func(e client.Event) bool { return e.Type == client.EventJoin && e.Room == "dev" && e.From == "bob" })
	alice.SendTo("dev", "hi dev")
	alice.Send("hi main")
	kb.waitEvent(t, "the dev chat", chatIn("dev", "hi dev"))
	kb.waitEvent(t, "the main chat", chatIn(wire.RoomMain, "hi main"))

	// Direct messages, and their refusal.
	bob.Msg("alice", "私信")
	e := ka.waitEvent(t, "bob's dm", isType(client.EventDM, wire.Inbox))
	if e.From != "bob" || e.To != "alice" || e.Text != "私信" || e.Format("zh") != "bob 悄悄对你说: 私信" {
		t.Errorf("dm %+v", e)
	}
	kb.waitEvent(t, "bob's echo", func(e client.Event) bool { return e.Type == client.EventDM && e.Self })
	id, _ := bob.Msg("nobody", "hello?")
	e = kb.waitEvent(t, "the refusal", func(e client.Event) bool { return e.Type == client.EventError && e.ID == id })
	if e.Code != wire.CodeNoSuchMember || e.To != "nobody" {
		t.Errorf("refusal %+v", e)
	}

	// A locked room: the wrong key, then the right one with its topic.
	alice.Join("ops", "nope")
	e = ka.waitEvent(t, "the bad key", func(e client.Event) bool { return e.Type == client.EventError && e.Room == "ops" })
	if e.Code != wire.CodeBadKey {
		t.Errorf("refusal %+v", e)
	}
	alice.Join("ops", "k")
	if e := ka.waitEvent(t, "alice joined ops", isType(client.EventJoined, "ops")); e.Topic != "on call" {
		t.Errorf("joined %+v", e)
	}
	var re *client.RelayError
	if _, err := bob.WhoIn(ctx5(t), "ops"); !errors.As(err, &re) || re.Code != wire.CodeNotInRoom {
		t.Errorf("bob's who in a locked room: %v", err)
	}
	if names, err := bob.WhoIn(ctx5(t), "dev"); err != nil || !slices.Equal(names, []string{"alice", "bob"}) {
		t.Errorf("who in dev: %q %v", names, err)
	}
	rooms, err := bob.Rooms(ctx5(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []client.RoomInfo{{Name: "dev", Count: 2}, {Name: "main", Count: 2}, {Name: "ops", Count: 1, Topic: "on call", Locked: true}}
	if !slices.Equal(rooms, want) {
		t.Errorf("rooms %+v, want %+v", rooms, want)
	}

	// The operator sets dev's topic.
	if err := r.Server.SetTopic("dev", "release 2.0"); err != nil {
		t.Fatal(err)
	}
	if e := kb.waitEvent(t, "the topic", isType(client.EventNotice, "dev")); e.Topic != "release 2.0" {
		t.Errorf("notice %+v", e)
	}

	// Kicked from dev only: bob stays, in main.
	if _, err := r.Server.KickFromRoom("bob", "dev", "spam"); err != nil {
		t.Fatal(err)
	}
	e = kb.waitEvent(t, "bob out of dev", isType(client.EventParted, "dev"))
	if e.Code != "removed" || !strings.Contains(e.Reason, "spam") {
		t.Errorf("parted %+v", e)
	}
	bob.Send("still here")
	ka.waitEvent(t, "bob in main", chatIn(wire.RoomMain, "still here"))
	if got := joinedNames(bob); !slices.Equal(got, []string{"main"}) {
		t.Errorf("bob in %q", got)
	}
	ka.waitEvent(t, "bob's kick in dev", func(e client.Event) bool {
		return e.Type == client.EventLeave && e.Room == "dev" && e.From == "bob" && e.Reason == "spam"
	})

	// Kicked from main only: alice stays logged in, in dev and ops.
	if _, err := r.Server.KickFromRoom("alice", "main", "off topic"); err != nil {
		t.Fatal(err)
	}
	ka.waitEvent(t, "alice out of main", isType(client.EventParted, wire.RoomMain))
	alice.SendTo("dev", "in dev still")
	ka.waitEvent(t, "alice's echo in dev", chatIn("dev", "in dev still"))
	if got := joinedNames(alice); !slices.Equal(got, []string{"dev", "ops"}) {
		t.Errorf("alice in %q", got)
	}
	if _, err := alice.Send("main?"); !errors.Is(err, client.ErrNotInRoom) {
		t.Errorf("send to main after the kick: %v", err)
	}

	// Kicked from the relay: the session ends, as before rooms.
	if _, err := r.Server.Kick("bob", "bye"); err != nil {
		t.Fatal(err)
	}
	e = kb.waitEvent(t, "bob's end", func(e client.Event) bool { return e.Type == client.EventEnded })
	var kicked *client.KickedError
	if !errors.As(e.Err, &kicked) {
		t.Errorf("ended %+v", e)
	}
	for _, e := range ka.events() {
		if e.Type == client.EventEnded || e.Type == client.EventMissed {
			t.Errorf("alice: %+v", e)
		}
	}
}

// Through loss, duplication and reordering, messages in five rooms and
// direct messages all arrive once, each room in its own order: a member
// in five rooms loses nothing in any of them.
func TestRoomsLossyWithRelay(t *testing.T) {
	r := relaytest.Start(t)
	lp := relaytest.NewLossyProxy(t, r.Addr, relaytest.LossConfig{Seed: 7, Loss: 0.10, Dup: 0.05, Reorder: 0.05, Jitter: time.Millisecond})
	names := []string{"ann", "ben"}
	rooms := []string{"main", "r1", "r2", "r3", "r4"}
	var cs []*client.Client
	var ks []*collector
	for i, n := range names {
		c := dial(t, lp.Addr().String(), n, uint64(10+i), func(c *client.Config) { c.Window = 8 })
		k := collect(c)
		for _, room := range rooms[1:] {
			c.Join(room, "")
			k.waitEvent(t, n+" joined "+room, isType(client.EventJoined, room))
		}
		cs, ks = append(cs, c), append(ks, k)
	}
	for _, room := range rooms {
		ks[0].waitEvent(t, "ben in "+room, func(e client.Event) bool { return e.Type == client.EventJoin && e.Room == room && e.From == "ben" })
	}
	const per = 100
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range per {
				room := rooms[j%len(rooms)]
				if _, err := c.SendTo(room, fmt.Sprintf("%s %s %d", names[i], room, j)); err != nil {
					t.Error(err)
				}
				if j%5 == 0 {
					c.Msg(names[1-i], fmt.Sprintf("%s dm %d", names[i], j))
				}
			}
		}()
	}
	wg.Wait()
	isMsg := func(e client.Event) bool { return e.Type == client.EventChat || e.Type == client.EventDM }
	// Each sees every chat (its own echoed) and every dm (its own echoed).
	total := 2*per + 2*(per/5)
	for i, k := range ks {
		deadline := time.Now().Add(30 * time.Second)
		for k.count(isMsg) < total {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d messages; proxy %+v", names[i], k.count(isMsg), total, lp.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i, k := range ks {
		last := map[string]uint64{}
		seen := map[string]bool{}
		for _, e := range k.events() {
			switch {
			case e.Type == client.EventMissed || e.Type == client.EventEnded || e.Type == client.EventError:
				t.Errorf("%s: %+v", names[i], e)
			case isMsg(e):
				if seen[e.Text] {
					t.Errorf("%s: %q twice", names[i], e.Text)
				}
				seen[e.Text] = true
				if e.Seq <= last[e.Room] {
					t.Errorf("%s: %s seq %d after %d", names[i], e.Room, e.Seq, last[e.Room])
				}
				last[e.Room] = e.Seq
				if e.Type == client.EventChat && !strings.Contains(e.Text, " "+e.Room+" ") {
					t.Errorf("%s: %q delivered in %s", names[i], e.Text, e.Room)
				}
			}
		}
	}
	t.Logf("proxy %+v", lp.Stats())
}

// A client that moves to a new port resumes every room and its inbox:
// what was said meanwhile arrives, once.
func TestRoomsResumeWithRelay(t *testing.T) {
	r := relaytest.Start(t)
	addr := r.Addr.String()
	alice := dial(t, addr, "alice", 1)
	ka := collect(alice)
	bob := dial(t, addr, "bob", 2)
	for _, c := range []*client.Client{alice, bob} {
		c.Join("dev", "")
	}
	ka.waitEvent(t, "bob in dev", func(e client.Event) bool { return e.Type == client.EventJoin && e.Room == "dev" && e.From == "bob" })
	if err := alice.Rebind(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		bob.SendTo("dev", fmt.Sprintf("d%d", i))
		bob.Msg("alice", fmt.Sprintf("p%d", i))
	}
	ka.waitEvent(t, "resumed", func(e client.Event) bool { return e.Type == client.EventResumed })
	for i := range 10 {
		ka.waitEvent(t, "d", chatIn("dev", fmt.Sprintf("d%d", i)))
		ka.waitEvent(t, "p", func(e client.Event) bool { return e.Type == client.EventDM && e.Text == fmt.Sprintf("p%d", i) })
	}
	if n := ka.count(func(e client.Event) bool { return e.IsRoomEvent() && e.From == "bob" && e.Type != client.EventJoin }); n != 20 {
		t.Errorf("%d of bob's messages at alice, want 20 once each", n)
	}
}

// After a relay restart the client logs in again and is back in its
// rooms, quietly.
func TestRoomsRestartWithRelay(t *testing.T) {
	r1 := relaytest.Start(t)
	lp := relaytest.NewLossyProxy(t, r1.Addr, relaytest.LossConfig{Seed: 1})
	alice := dial(t, lp.Addr().String(), "alice", 1)
	ka := collect(alice)
	alice.Join("dev", "")
	ka.waitEvent(t, "joined", isType(client.EventJoined, "dev"))
	ctx := ctx5(t)
	if err := r1.Server.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ka.waitEvent(t, "restarting", func(e client.Event) bool { return e.Type == client.EventRestarting })
	r2 := relaytest.Start(t)
	lp.SetTarget(r2.Addr)
	ka.waitEvent(t, "restarted", func(e client.Event) bool { return e.Type == client.EventRestarted })
	alice.SendTo("dev", "back")
	ka.waitEvent(t, "the echo in dev", chatIn("dev", "back"))
	waitFor(t, 5*time.Second, "alice in dev on the new relay", func() bool {
		for _, ri := range r2.Server.Rooms() {
			if ri.Name == "dev" && ri.Members == 1 {
				return true
			}
		}
		return false
	})
	if n := ka.count(func(e client.Event) bool { return e.Type == client.EventJoined }); n != 1 {
		t.Errorf("%d joined events", n)
	}
}

// A big room announces joins in batches; the client words them as the
// relay words them for classic members.
func TestBatchedJoinsWithRelay(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) { c.AnnounceLimit = 1 })
	addr := r.Addr.String()
	alice := dial(t, addr, "alice", 1)
	ka := collect(alice)
	alice.Join("big", "")
	ka.waitEvent(t, "joined", isType(client.EventJoined, "big"))
	// Six joins within a second or two: at most two sweeps apart, so one
	// batch has at least three.
	const n = 6
	for i := range n {
		c := dial(t, addr, fmt.Sprintf("u%d", i), uint64(i+2))
		c.Join("big", "")
	}
	announced := func() (total int, batches []client.Event) {
		for _, e := range ka.events() {
			if e.Type == client.EventJoin && e.Room == "big" && e.From != "alice" {
				total += max(int(e.Count), 1)
				if e.Batched() {
					batches = append(batches, e)
				}
			}
		}
		return total, batches
	}
	waitFor(t, 10*time.Second, "every join announced", func() bool { total, _ := announced(); return total == n })
	_, batches := announced()
	if len(batches) == 0 {
		t.Fatal("no batch")
	}
	w := wire.Words(wire.LangEN)
	for _, b := range batches {
		if int(b.Count) > len(b.Names) {
			if got, want := b.Format("en"), w.Batch(true, b.Names, int(b.Count)); got != want {
				t.Errorf("batch reads %q, want %q", got, want)
			}
		} else if got := b.Format("en"); !strings.HasSuffix(got, " and "+b.Names[len(b.Names)-1]+" joined the chat room") {
			t.Errorf("batch reads %q", got)
		}
		if got := b.Format("zh"); !strings.HasSuffix(got, fmt.Sprintf("等 %d 人进入聊天室", b.Count)) {
			t.Errorf("zh batch reads %q", got)
		}
	}
}

// adminCmd runs one command on the relay's admin socket and returns its
// last line ("ok" or an error).
func adminCmd(t *testing.T, r *relaytest.Relay, req string) string {
	t.Helper()
	c, err := net.Dial("unix", r.AdminSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(req + "\n")); err != nil {
		t.Fatal(err)
	}
	var last string
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		last = sc.Text()
		if last == relay.AdminOK || strings.HasPrefix(last, relay.AdminErrPrefix) {
			break
		}
	}
	return last
}

// A member muted in one room has its chats there refused by id: they are
// reported, not retransmitted, and it chats elsewhere as before.
func TestMutedInRoomWithRelay(t *testing.T) {
	r := relaytest.Start(t)
	bob := dial(t, r.Addr.String(), "bob", 1)
	kb := collect(bob)
	bob.Join("dev", "")
	kb.waitEvent(t, "joined", isType(client.EventJoined, "dev"))
	if got := adminCmd(t, r, "mute bob --room dev"); got != relay.AdminOK {
		t.Fatalf("mute: %q", got)
	}
	id, _ := bob.SendTo("dev", "let me speak")
	e := kb.waitEvent(t, "the refusal", func(e client.Event) bool { return e.Type == client.EventError && e.ID == id })
	if e.Code != wire.CodeMuted || e.Room != "dev" {
		t.Errorf("refusal %+v", e)
	}
	if err := bob.Flush(ctx5(t)); err != nil {
		t.Errorf("flush: %v", err)
	}
	bob.Send("in main")
	kb.waitEvent(t, "the echo in main", chatIn(wire.RoomMain, "in main"))
}
