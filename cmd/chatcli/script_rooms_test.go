package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// waitJSON waits for a stdout line whose object has every field of want
// (numbers compare as float64), and returns it.
func (c *client) waitJSON(t *testing.T, want map[string]any) map[string]any {
	t.Helper()
	var got map[string]any
	wantJSON, _ := json.Marshal(want)
	waitFor(t, 5*time.Second, "a stdout object with "+string(wantJSON), func() bool {
		for line := range strings.SplitSeq(c.stdout.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil {
				continue
			}
			ok := true
			for k, v := range want {
				mv, _ := json.Marshal(m[k])
				wv, _ := json.Marshal(v)
				ok = ok && string(mv) == string(wv)
			}
			if ok {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

func (c *client) waitStderr(t *testing.T, want string) {
	t.Helper()
	waitFor(t, 5*time.Second, "stderr with "+want, func() bool { return strings.Contains(c.stderr.String(), want) })
}

// Script mode with rooms and direct messages against the relay: --room,
// /join (with a key), lines going to the current room, /part, /msg, the
// lists, and the JSON every room event and dm prints as.
func TestScriptRooms(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) {
		c.Rooms = []relay.RoomSettings{{Name: "ops", Key: "k", Topic: "on call"}}
	})
	addr := r.Addr.String()
	alice := startClient(t, []string{"--json", "--name", "alice", "--room", "dev", addr}, nil)
	alice.waitStdout(t, `{"type":"joined","room":"dev"}`)
	bob := startClient(t, []string{"--name", "bob", addr}, nil)
	alice.waitJSON(t, map[string]any{"type": "join", "room": "main", "from": "bob"})
	bob.say(t, "/join Dev")
	bob.waitStdout(t, "* you joined dev")
	alice.waitJSON(t, map[string]any{"type": "join", "room": "dev", "from": "bob"})
	bob.say(t, "hi dev") // the current room: the last joined
	alice.waitJSON(t, map[string]any{"type": "chat", "room": "dev", "from": "bob", "text": "hi dev"})
	alice.say(t, "hello 你好")
	bob.waitStdout(t, "[dev] alice says: hello 你好")
	alice.waitJSON(t, map[string]any{"type": "chat", "room": "dev", "from": "alice", "text": "hello 你好"})

	// Direct messages: exactly four fields, the sender's own included.
	bob.say(t, "/msg alice psst, a  secret")
	alice.waitStdout(t, `{"type":"dm","from":"bob","to":"alice","text":"psst, a  secret"}`)
	alice.say(t, "/msg bob got it")
	alice.waitStdout(t, `{"type":"dm","from":"alice","to":"bob","text":"got it"}`)
	bob.waitStdout(t, "alice whispers: got it")
	alice.say(t, "/msg nobody hello?")
	alice.waitJSON(t, map[string]any{"type": "error", "code": "no_such_member", "to": "nobody"})

	// Lists and the topic.
	alice.say(t, "/rooms")
	alice.waitStdout(t, `{"type":"room","room":"dev","count":2}`)
	alice.waitStdout(t, `{"type":"room","room":"ops","count":0,"topic":"on call","locked":true}`)
	alice.say(t, "/who")
	alice.waitStdout(t, `{"type":"members","room":"dev","names":["alice","bob"]}`)
	if err := r.Server.SetTopic("dev", "release 2.0"); err != nil {
		t.Fatal(err)
	}
	alice.waitJSON(t, map[string]any{"type": "notice", "room": "dev", "topic": "release 2.0"})
	alice.say(t, "/topic")
	alice.waitStdout(t, `{"type":"topic","room":"dev","topic":"release 2.0"}`)
	bob.say(t, "/who main")
	bob.waitStdout(t, "* in the room (2): alice, bob")

	// A refused join: the lines after it go where they went before.
	bob.say(t, "/join ops wrong")
	bob.waitStderr(t, "bad_key")
	bob.say(t, "still in dev")
	alice.waitJSON(t, map[string]any{"type": "chat", "room": "dev", "from": "bob", "text": "still in dev"})
	bob.say(t, "/join ops k")
	bob.waitStdout(t, "* you joined ops (topic: on call)")
	bob.say(t, "/part")
	bob.waitStdout(t, "* you left ops")
	bob.say(t, "/part") // dev: back in main
	alice.waitJSON(t, map[string]any{"type": "leave", "room": "dev", "from": "bob"})
	bob.say(t, "back in main")
	alice.waitJSON(t, map[string]any{"type": "chat", "room": "main", "from": "bob", "text": "back in main"})
	bob.say(t, "/frob")
	bob.waitStderr(t, "unknown command /frob")
	bob.say(t, "//slash")
	alice.waitJSON(t, map[string]any{"type": "chat", "room": "main", "from": "bob", "text": "/slash"})

	for _, c := range []*client{alice, bob} {
		c.in.Close()
		if code := c.wait(t, 5*time.Second); code != 0 {
			t.Errorf("exit %d; stderr %s", code, c.stderr.String())
		}
	}
	for _, m := range jsonLines(t, alice.stdout.String()) {
		switch m["type"] {
		case "chat", "join", "leave", "notice", "timeout", "missed":
			if m["room"] == nil {
				t.Errorf("room event without a room: %v", m)
			}
		case "dm":
			if len(m) != 4 {
				t.Errorf("dm with other fields: %v", m)
			}
		}
	}
}

func TestParseSlash(t *testing.T) {
	for _, tt := range []struct {
		line       string
		name, rest string
		args       []string
		text       string
		ok         bool
	}{
		{line: "/join dev k", name: "join", args: []string{"dev", "k"}, rest: "k", ok: true},
		{line: "/msg  bob  hi  there ", name: "msg", args: []string{"bob", "hi", "there"}, rest: "hi  there ", ok: true},
		{line: "/part", name: "part", ok: true},
		{line: "//me waves", text: "/me waves"},
		{line: "hello", text: "hello"},
		{line: "/", text: "/"},
	} {
		s, text, ok := parseSlash(tt.line)
		if ok != tt.ok || s.name != tt.name || s.rest != tt.rest || text != tt.text || strings.Join(s.args, "|") != strings.Join(tt.args, "|") {
			t.Errorf("parseSlash(%q) = %+v %q %v", tt.line, s, text, ok)
		}
	}
}
