package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	rc "github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// Headless tests of the terminal model: Update is driven with key presses
// and events, and the screen (View) and the requests it makes are checked.

// tm wraps a model under test.
type tm struct {
	t    *testing.T
	m    model
	reqs *requestQueue
}

// newTM is a model logged in as alice with protocol proto, revision rev,
// on a 160x30 screen, its clock at 12:34.
func newTM(t *testing.T, proto string, rev uint64) *tm {
	x := &tm{t: t, reqs: newRequestQueue()}
	x.m = newModel(options{Name: "alice", Lang: "en"}, "relay:1", x.reqs)
	x.m.now = func() time.Time { return time.Date(2026, 1, 2, 12, 34, 0, 0, time.Local) }
	x.update(tea.WindowSizeMsg{Width: 160, Height: 30})
	x.update(loginMsg{name: "alice", proto: proto, rev: rev})
	return x
}

func (x *tm) update(msg tea.Msg) {
	next, _ := x.m.Update(msg)
	x.m = next.(model)
}

// key presses a key: "ctrl+n", "alt+2", "tab", "up", "enter", or text.
func (x *tm) key(k string) {
	var msg tea.KeyPressMsg
	switch {
	case k == "tab":
		msg = tea.KeyPressMsg{Code: tea.KeyTab}
	case k == "enter":
		msg = tea.KeyPressMsg{Code: tea.KeyEnter}
	case k == "up":
		msg = tea.KeyPressMsg{Code: tea.KeyUp}
	case k == "down":
		msg = tea.KeyPressMsg{Code: tea.KeyDown}
	case strings.HasPrefix(k, "ctrl+"):
		msg = tea.KeyPressMsg{Code: rune(k[5]), Mod: tea.ModCtrl}
	case strings.HasPrefix(k, "alt+"):
		msg = tea.KeyPressMsg{Code: rune(k[4]), Mod: tea.ModAlt}
	default:
		for _, r := range k {
			x.update(tea.KeyPressMsg{Code: r, Text: string(r)})
		}
		return
	}
	x.update(msg)
}

// enter types line and presses Enter.
func (x *tm) enter(line string) {
	x.key(line)
	x.key("enter")
}

func (x *tm) events(evs ...rc.Event) { x.update(eventsMsg(evs)) }

// screen is the View's text without styles, one string per line,
// trailing spaces trimmed.
func (x *tm) screen() []string {
	lines := strings.Split(ansi.Strip(x.m.View().Content), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return lines
}

func (x *tm) status() string { s := x.screen(); return s[len(s)-2] }

// shows reports whether a screen line ends with want.
func (x *tm) shows(want string) bool {
	for _, l := range x.screen() {
		if strings.HasSuffix(l, want) {
			return true
		}
	}
	return false
}

// popAll returns the requests pushed since the last call.
func (x *tm) popAll() []request {
	var out []request
	for r, ok := x.reqs.pop(); ok; r, ok = x.reqs.pop() {
		out = append(out, r)
	}
	return out
}

func chatEv(room, from, text string, seq uint64) rc.Event {
	return rc.Event{Type: rc.EventChat, Room: room, From: from, Text: text, Seq: seq}
}

// Rooms have views: joining shows the room; what arrives elsewhere is
// counted unread in the status line; Ctrl-N, Ctrl-P and Alt-digits switch;
// lines go to the room shown; parting drops the view.
func TestModelRoomViews(t *testing.T) {
	x := newTM(t, protoV2, 1)
	x.popAll()
	x.enter("/join dev")
	if r := x.popAll(); len(r) != 1 || r[0].kind != reqJoin || r[0].room != "dev" {
		t.Fatalf("requests %+v", r)
	}
	x.events(rc.Event{Type: rc.EventJoined, Room: "dev", Topic: "builds"})
	if s := x.status(); !strings.Contains(s, "main [dev]") || !strings.Contains(s, "^N/^P") {
		t.Errorf("status %q", s)
	}
	x.events(chatEv("main", "bob", "in main", 5), chatEv("main", "bob", "again", 6), chatEv("dev", "bob", "in dev", 2))
	if !x.shows("bob says: in dev") || x.shows("bob says: in main") {
		t.Errorf("dev's view:\n%s", strings.Join(x.screen(), "\n"))
	}
	if s := x.status(); !strings.Contains(s, "main(2) [dev]") {
		t.Errorf("status %q: want main's 2 unread", s)
	}
	x.enter("hello dev")
	if r := x.popAll(); len(r) != 1 || r[0].kind != reqChat || r[0].room != "dev" || r[0].text != "hello dev" {
		t.Errorf("requests %+v", r)
	}
	x.enter("/topic")
	if !x.shows("* topic of dev: builds") {
		t.Errorf("no topic line:\n%s", strings.Join(x.screen(), "\n"))
	}
	x.key("ctrl+p")
	if !x.shows("bob says: again") || !strings.Contains(x.status(), "[main] dev") {
		t.Errorf("main's view: %q\n%s", x.status(), strings.Join(x.screen(), "\n"))
	}
	x.enter("hello main")
	if r := x.popAll(); len(r) != 1 || r[0].room != "main" {
		t.Errorf("requests %+v", r)
	}
	x.key("ctrl+n")
	if !strings.Contains(x.status(), "[dev]") {
		t.Errorf("ctrl+n: %q", x.status())
	}
	x.key("alt+1")
	if !strings.Contains(x.status(), "[main]") {
		t.Errorf("alt+1: %q", x.status())
	}
	x.key("alt+2")
	x.enter("/part")
	if r := x.popAll(); len(r) != 1 || r[0].kind != reqPart || r[0].room != "dev" {
		t.Errorf("requests %+v", r)
	}
	x.events(rc.Event{Type: rc.EventParted, Room: "dev"})
	if s := x.status(); strings.Contains(s, "dev") || !x.shows("* you left dev") {
		t.Errorf("after part: %q\n%s", s, strings.Join(x.screen(), "\n"))
	}
}

// Direct messages have their own view; Enter there answers whoever wrote
// last.
func TestModelDMView(t *testing.T) {
	x := newTM(t, protoV2, 1)
	x.popAll()
	x.events(rc.Event{Type: rc.EventDM, Room: wire.Inbox, From: "bob", To: "alice", Text: "psst", Seq: 1})
	if s := x.status(); !strings.Contains(s, "[main] DMs(1)") {
		t.Errorf("status %q", s)
	}
	x.key("ctrl+n")
	if !x.shows("bob whispers: psst") {
		t.Errorf("DMs view:\n%s", strings.Join(x.screen(), "\n"))
	}
	x.enter("hi bob")
	if r := x.popAll(); len(r) != 1 || r[0].kind != reqMsg || r[0].to != "bob" || r[0].text != "hi bob" {
		t.Errorf("requests %+v", r)
	}
	x.events(rc.Event{Type: rc.EventDM, Room: wire.Inbox, From: "alice", To: "bob", Text: "hi bob", Seq: 2, Self: true})
	if !x.shows("you whisper to bob: hi bob") {
		t.Errorf("own dm:\n%s", strings.Join(x.screen(), "\n"))
	}
	x.enter("/msg carol hello there")
	if r := x.popAll(); len(r) != 1 || r[0].kind != reqMsg || r[0].to != "carol" || r[0].text != "hello there" {
		t.Errorf("requests %+v", r)
	}
}

// Each line carries the time it arrived; each name its own colour.
func TestModelTimesAndColours(t *testing.T) {
	x := newTM(t, protoV2, 1)
	x.events(chatEv("main", "bob", "hi", 1), chatEv("main", "carol", "yo", 2))
	if !slices.Contains(x.screen(), "12:34 bob says: hi") {
		t.Errorf("screen:\n%s", strings.Join(x.screen(), "\n"))
	}
	raw := x.m.View().Content
	for _, n := range []string{"bob", "carol"} {
		if !strings.Contains(raw, nameColor(n).Render(n)+" says:") {
			t.Errorf("%s is not in its colour: %q", n, raw)
		}
	}
	if nameColor("bob").Render("x") != nameColor("bob").Render("x") || nameColor("bob").Render("x") == nameColor("carol").Render("x") {
		t.Error("colours are not stable per name, or bob and carol share one")
	}
}

// Tab completes commands and names; Up and Down recall earlier lines.
func TestModelCompletionAndHistory(t *testing.T) {
	x := newTM(t, protoV2, 1)
	x.events(chatEv("main", "bob", "hi", 1), chatEv("main", "bea", "hi", 2), chatEv("main", "张三", "你好", 3))
	x.key("/jo")
	x.key("tab")
	if v := x.m.input.Value(); v != "/join " {
		t.Errorf("completed %q", v)
	}
	x.m.resetInput()
	x.key("hi 张")
	x.key("tab")
	if v := x.m.input.Value(); v != "hi 张三 " {
		t.Errorf("completed %q", v)
	}
	x.m.resetInput()
	x.key("b")
	x.key("tab")
	if v, s := x.m.input.Value(), x.status(); v != "b" || !strings.Contains(s, "bea bob") {
		t.Errorf("ambiguous: %q, status %q", v, s)
	}
	x.m.resetInput()
	x.popAll()
	x.enter("one")
	x.enter("two")
	x.key("draft")
	for _, step := range []struct{ key, want string }{{"up", "two"}, {"up", "one"}, {"up", "one"}, {"down", "two"}, {"down", "draft"}} {
		x.key(step.key)
		if v := x.m.input.Value(); v != step.want {
			t.Errorf("%s: %q, want %q", step.key, v, step.want)
		}
	}
}

// /help lists the commands and keys; an unknown command is refused, not
// sent; // sends a line starting with /.
func TestModelHelpAndUnknown(t *testing.T) {
	x := newTM(t, protoV2, 1)
	x.popAll()
	x.enter("/help")
	for _, want := range []string{"/join ROOM [KEY]", "Ctrl-N / Ctrl-P"} {
		found := false
		for _, l := range x.m.lines {
			found = found || strings.Contains(ansi.Strip(l), want)
		}
		if !found {
			t.Errorf("/help lacks %q", want)
		}
	}
	x.enter("/frob")
	x.enter("//me waves")
	if r := x.popAll(); len(r) != 1 || r[0].text != "/me waves" {
		t.Errorf("requests %+v", r)
	}
	if !x.shows("unknown command /frob: /help lists them (// sends a line that starts with /)") {
		t.Errorf("screen:\n%s", strings.Join(x.screen(), "\n"))
	}
}

// Without rooms (a revision-0 relay) the room commands say so; with the
// classic protocol lines are sent as they are, as before.
func TestModelWithoutRooms(t *testing.T) {
	x := newTM(t, protoV2, 0)
	x.popAll()
	x.enter("/join dev")
	if r := x.popAll(); len(r) != 0 || !x.shows("/join: the relay has no rooms or direct messages (v2 revision 0)") {
		t.Errorf("requests %+v\n%s", r, strings.Join(x.screen(), "\n"))
	}
	c := newTM(t, protoClassic, 0)
	c.popAll()
	c.enter("/join dev")
	if r := c.popAll(); len(r) != 1 || r[0].kind != reqChat || r[0].text != "/join dev" {
		t.Errorf("classic requests %+v", r)
	}
}

// Chinese typed in pieces stays whole on the input line while messages
// arrive in every view, and Enter sends it whole.
func TestModelCJKInputWhileMessagesArrive(t *testing.T) {
	x := newTM(t, protoV2, 1)
	x.events(rc.Event{Type: rc.EventJoined, Room: "dev"})
	x.popAll()
	seq := uint64(0)
	for _, piece := range []string{"你好，", "世界！", "测试"} {
		x.key(piece)
		for _, room := range []string{"main", "dev"} {
			seq++
			x.events(chatEv(room, "bob", "msg", seq), rc.Event{Type: rc.EventDM, Room: wire.Inbox, From: "bob", To: "alice", Text: "x", Seq: seq})
		}
	}
	want := "你好，世界！测试"
	if s := x.screen(); s[len(s)-1] != "> "+want {
		t.Errorf("input line %q", s[len(s)-1])
	}
	if v := x.m.View(); v.Cursor == nil || v.Cursor.X != 2+2*len([]rune(want)) {
		t.Errorf("cursor %+v", v.Cursor)
	}
	x.key("enter")
	if r := x.popAll(); len(r) != 1 || r[0].text != want || r[0].room != "dev" {
		t.Errorf("requests %+v", r)
	}
}
