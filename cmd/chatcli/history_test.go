package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/chatrelay/chatrelay/relay"
	rc "github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/relaytest"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// pgup presses PgUp.
func (x *tm) pgup() { x.update(tea.KeyPressMsg{Code: tea.KeyPgUp}) }

// toTop presses PgUp until the view is at its top.
func (x *tm) toTop() {
	for i := 0; !x.m.vp.AtTop(); i++ {
		if i > 1000 {
			x.t.Fatal("PgUp never reaches the top")
		}
		x.pgup()
	}
}

// page is a history page of bob's lines from..to of main.
func page(from, to uint64, more bool, lost uint64) rc.History {
	h := rc.History{Room: wire.RoomMain, Epoch: "e1", More: more, Lost: lost}
	for s := from; s <= to; s++ {
		h.Events = append(h.Events, rc.Event{Type: rc.EventChat, Room: wire.RoomMain, From: "bob", Text: fmt.Sprintf("line %d", s), Seq: s, Epoch: "e1", History: true})
	}
	return h
}

var lineNo = regexp.MustCompile(`bob says: line (\d+)$`)

// lineNumbers are the numbers of bob's lines in the view shown, top to
// bottom.
func (x *tm) lineNumbers() []int {
	var out []int
	for _, l := range x.m.lines {
		if m := lineNo.FindStringSubmatch(ansi.Strip(l)); m != nil {
			n, _ := strconv.Atoi(m[1])
			out = append(out, n)
		}
	}
	return out
}

// Scrolling up past the top of a room's view asks for the page before its
// oldest line, shows it above in order without moving what is on screen,
// and at the start of the room says so and asks no more.
func TestModelScrollPastTopLoadsHistory(t *testing.T) {
	x := newTM(t, protoV2, 1)
	x.update(tea.WindowSizeMsg{Width: 160, Height: 12}) // a viewport of 10 lines
	for s := uint64(101); s <= 130; s++ {
		x.events(chatEv("main", "bob", fmt.Sprintf("line %d", s), s))
	}
	x.popAll()
	x.toTop()
	if r := x.popAll(); len(r) != 0 {
		t.Fatalf("requests while scrolling to the top: %+v", r)
	}
	x.pgup() // past the top
	r := x.popAll()
	if len(r) != 1 || r[0].kind != reqHistory || r[0].room != "main" || r[0].before != 101 {
		t.Fatalf("requests %+v, want history of main before 101", r)
	}
	x.pgup() // while it loads: nothing more
	if r := x.popAll(); len(r) != 0 || !strings.Contains(x.status(), "loading older messages") {
		t.Fatalf("requests %+v, status %q", r, x.status())
	}

	before := x.screen()
	x.update(historyMsg{room: "main", before: 101, page: page(51, 100, true, 0)})
	if after := x.screen(); strings.Join(after[:10], "\n") != strings.Join(before[:10], "\n") {
		t.Fatalf("the view moved:\nbefore\n%s\nafter\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
	x.pgup()
	if !x.shows("--:-- bob says: line 100") || !x.shows("--:-- bob says: line 91") {
		t.Fatalf("one page up:\n%s", strings.Join(x.screen(), "\n"))
	}
	x.toTop()
	x.pgup()
	if r := x.popAll(); len(r) != 1 || r[0].before != 51 {
		t.Fatalf("requests %+v, want history before 51", r)
	}
	x.update(historyMsg{room: "main", before: 51, page: page(1, 50, false, 0)})
	x.toTop()
	if s := x.screen(); !strings.HasSuffix(s[0], "* no older messages") {
		t.Fatalf("the top:\n%s", strings.Join(s, "\n"))
	}
	x.pgup()
	if r := x.popAll(); len(r) != 0 || !strings.Contains(x.status(), "no older messages") {
		t.Fatalf("at the start: requests %+v, status %q", r, x.status())
	}
	got := x.lineNumbers()
	if len(got) != 130 {
		t.Fatalf("%d of bob's lines, want 130: %v", len(got), got)
	}
	for i, n := range got {
		if n != i+1 {
			t.Fatalf("line %d is %d: %v", i, n, got)
		}
	}
}

// History the relay no longer keeps is said at the top; a line that came
// meanwhile is not shown twice; another view's page waits in its view.
func TestModelHistoryLostAndOtherViews(t *testing.T) {
	x := newTM(t, protoV2, 1)
	x.events(chatEv("main", "bob", "line 60", 60))
	x.popAll()
	x.pgup()
	if r := x.popAll(); len(r) != 1 || r[0].before != 60 {
		t.Fatalf("requests %+v", r)
	}
	x.events(rc.Event{Type: rc.EventJoined, Room: "dev"}) // shows dev
	x.update(historyMsg{room: "main", before: 60, page: page(40, 60, false, 39)})
	if x.shows("line 59") {
		t.Fatal("main's page shown in dev's view")
	}
	x.key("ctrl+p")
	if got := x.lineNumbers(); len(got) != 21 || got[0] != 40 || got[20] != 60 {
		t.Fatalf("main's lines %v, want 40..60 once each", got)
	}
	if !x.shows("* older messages are no longer kept") {
		t.Fatalf("main:\n%s", strings.Join(x.screen(), "\n"))
	}

	// Without rooms (revision 0) there is no history to ask for.
	y := newTM(t, protoV2, 0)
	y.events(chatEv("main", "bob", "hi", 5))
	y.popAll()
	y.pgup()
	if r := y.popAll(); len(r) != 0 {
		t.Fatalf("revision 0: requests %+v", r)
	}
}

// /history in a --json script prints older events with "history" and
// their seq, oldest first, then how it ends; again, it goes further back,
// to what the relay no longer keeps.
func TestScriptHistoryJSON(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) { c.Ring = 64 })
	addr := r.Addr.String()
	bob := dialPeer(t, addr, "bob")
	for i := 1; i <= 100; i++ {
		bob.Send(fmt.Sprintf("line %d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bob.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// 1 bob's join, 2..101 his lines; alice's backlog is 82..101.
	alice := startClient(t, []string{"--json", "--name", "alice", addr}, nil)
	alice.waitJSON(t, map[string]any{"type": "join", "room": "main", "from": "alice"})

	alice.say(t, "/history 30")
	end := alice.waitJSON(t, map[string]any{"type": "history_end", "room": "main"})
	if end["count"] != 30.0 || end["more"] != true || end["lost"] != nil {
		t.Fatalf("history_end %v", end)
	}
	alice.say(t, "/history main 100")
	alice.waitJSON(t, map[string]any{"type": "history_end", "room": "main", "count": 13, "more": false, "lost": 38})
	alice.say(t, "/history")
	alice.waitJSON(t, map[string]any{"type": "history_end", "room": "main", "count": 0, "more": false, "lost": 38})

	// The history printed: 52..81, then 39..51, each a chat of bob's with
	// its seq, marked history.
	var seqs []int
	for line := range strings.SplitSeq(alice.stdout.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["type"] != "chat" || m["history"] != true {
			continue
		}
		seq := int(m["seq"].(float64))
		if m["from"] != "bob" || m["text"] != fmt.Sprintf("line %d", seq-1) || m["room"] != "main" {
			t.Fatalf("history line %s", line)
		}
		if seq < 82 {
			seqs = append(seqs, seq)
		}
	}
	want := []int{}
	for s := 52; s <= 81; s++ {
		want = append(want, s)
	}
	for s := 39; s <= 51; s++ {
		want = append(want, s)
	}
	if fmt.Sprint(seqs) != fmt.Sprint(want) {
		t.Fatalf("history seqs %v\nwant %v", seqs, want)
	}

	// Direct messages: the inbox's history, with seq and history.
	bob.Msg("alice", "psst")
	alice.waitStdout(t, `{"type":"dm","from":"bob","to":"alice","text":"psst"}`)
	alice.say(t, "/history @")
	alice.waitJSON(t, map[string]any{"type": "history_end", "room": "@", "count": 0, "more": false})
	alice.say(t, "/history dev")
	alice.waitStderr(t, "chatcli: /history dev: client: not in that room")
}

// A real terminal against the relay: PgUp past the top of main loads the
// messages before the backlog, in order, without moving what is on
// screen, down to where the relay's ring begins, which the top says.
func TestTUIHistoryUnderTmux(t *testing.T) {
	bin := buildChatcli(t)
	r := relaytest.Start(t, func(c *relay.Config) { c.Ring = 64 })
	addr := r.Addr.String()
	bob := dialPeer(t, addr, "bob")
	for i := 1; i <= 80; i++ {
		bob.Send(fmt.Sprintf("line %d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bob.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// 1 bob's join, 2..81 his lines, 82 alice's: the ring keeps 19..82,
	// the backlog shows 62..81 (lines 61..80).
	p := startTmux(t, bin, "--name", "alice", addr)
	p.waitScreen("the backlog", func(l []string) bool { return hasLine(strings.Join(l, "\n"), "bob says: line 80") })
	p.must("send-keys", "-t", p.session, "PPage")
	p.waitScreen("older lines above the backlog", func(l []string) bool {
		return hasLine(strings.Join(l, "\n"), "--:-- bob says: line 60") && hasLine(strings.Join(l, "\n"), "bob says: line 80")
	})
	var top []string
	for range 10 {
		p.must("send-keys", "-t", p.session, "PPage")
		if top = p.capture(); hasLine(strings.Join(top, "\n"), "--:-- * older messages are no longer kept") {
			break
		}
	}
	top = p.waitScreen("the ring's start", func(l []string) bool {
		return hasLine(strings.Join(l, "\n"), "--:-- * older messages are no longer kept")
	})
	want := "--:-- * older messages are no longer kept"
	for n := 18; n <= 30; n++ {
		want += "\n--:-- bob says: line " + strconv.Itoa(n)
	}
	if !strings.Contains(strings.Join(top, "\n"), want) {
		t.Fatalf("the top of main, want\n%s\nscreen:\n%s", want, strings.Join(top, "\n"))
	}
}
