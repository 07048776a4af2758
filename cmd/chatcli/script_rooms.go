package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	rc "github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// listTimeout bounds a /rooms, /who or /topic answer in script mode.
const listTimeout = 5 * time.Second

// scriptV2 is what script mode keeps of a v2 session: the rooms (the
// current one is where lines go) and where to print.
type scriptV2 struct {
	ctx            context.Context
	o              options
	c              *rc.Client
	rooms          *roomStack
	stdout, stderr io.Writer

	oldest map[string]uint64 // per room (compare key): the oldest seq printed, where /history goes on (history.go)
}

// warn prints a line for the user on stderr.
func (s *scriptV2) warn(format string, args ...any) {
	fmt.Fprintln(s.stderr, cleanLine("chatcli: "+fmt.Sprintf(format, args...)))
}

// join joins room with key and makes it current: the lines that follow
// wait for the relay's welcome, and are dropped (reported) if it refuses.
func (s *scriptV2) join(room, key string) {
	if err := s.c.Join(room, key); err != nil {
		s.warn("/join %s: %v", room, err)
		return
	}
	s.rooms.push(room)
}

// line handles one input line: a command, or a message for the current
// room. It reports false when the session ended (a send failed).
func (s *scriptV2) line(line string) bool {
	cmd, text, isCmd := parseSlash(line)
	if isCmd {
		s.command(cmd)
		return true
	}
	text = cleanText(text)
	if strings.TrimSpace(text) == "" {
		return true
	}
	room := s.rooms.current()
	if room == "" {
		s.warn("not in any room: /join one")
		return true
	}
	for _, part := range rc.SplitTextFor(room, text, wire.DefaultMaxDatagram) {
		if _, err := s.c.SendTo(room, part); err != nil {
			if errors.Is(err, rc.ErrClosed) {
				return false // the ended event says why
			}
			s.warn("not sent to %s: %v", room, err)
			return true
		}
	}
	return true
}

// command runs one slash command.
func (s *scriptV2) command(cmd slash) {
	switch cmd.name {
	case "join":
		if len(cmd.args) < 1 || len(cmd.args) > 2 {
			s.warn("usage: /join ROOM [KEY]")
			return
		}
		key := ""
		if len(cmd.args) == 2 {
			key = cmd.args[1]
		}
		s.join(cmd.args[0], key)
	case "part":
		room := s.rooms.current()
		if len(cmd.args) > 0 {
			room = cmd.args[0]
		}
		if room == "" {
			s.warn("not in any room")
			return
		}
		if err := s.c.Part(room); err != nil {
			s.warn("/part %s: %v", room, err)
			return
		}
		s.rooms.remove(room)
	case "msg":
		if len(cmd.args) < 2 {
			s.warn("usage: /msg NAME TEXT")
			return
		}
		to, text := cmd.args[0], cleanText(cmd.rest)
		for _, part := range rc.SplitMsgFor(to, text, wire.DefaultMaxDatagram) {
			if _, err := s.c.Msg(to, part); err != nil {
				s.warn("/msg %s: %v", to, err)
				return
			}
		}
	case "rooms":
		ctx, cancel := context.WithTimeout(s.ctx, listTimeout)
		defer cancel()
		rooms, err := s.c.Rooms(ctx)
		if err != nil {
			s.warn("/rooms: %v", err)
			return
		}
		for _, r := range rooms {
			if s.o.JSON {
				writeLine(s.stdout, marshalAny(roomJSON{Type: "room", Room: r.Name, Count: r.Count, Topic: r.Topic, Limit: r.Limit, Locked: r.Locked}))
			} else {
				writeLine(s.stdout, "* "+cleanLine(roomLine(r)))
			}
		}
	case "who":
		room := s.rooms.current()
		if len(cmd.args) > 0 {
			room = cmd.args[0]
		}
		if room == "" {
			room = wire.RoomMain
		}
		ctx, cancel := context.WithTimeout(s.ctx, listTimeout)
		defer cancel()
		names, err := s.c.WhoIn(ctx, room)
		if err != nil {
			s.warn("/who %s: %v", room, err)
			return
		}
		if s.o.JSON {
			writeLine(s.stdout, marshalAny(membersJSON{Type: "members", Room: room, Names: names}))
		} else {
			writeLine(s.stdout, "* "+cleanLine(whoLine(whoMsg{room: room, names: names})))
		}
	case "history":
		s.history(cmd)
	case "topic":
		room := s.rooms.current()
		topic, ok := topicOf(s.c, room)
		switch {
		case !ok:
			s.warn("/topic: not in %s", room)
		case s.o.JSON:
			writeLine(s.stdout, marshalAny(topicJSON{Type: "topic", Room: room, Topic: topic}))
		default:
			writeLine(s.stdout, "* "+cleanLine(topicLine(room, topic)))
		}
	default:
		s.warn("unknown command /%s (commands: %s; // sends a line starting with /)", cmd.name, strings.Join(commands, " "))
	}
}

// event keeps the room stack in step with the relay's answers: a join it
// welcomed (its spelling of the name), a join it refused, a room we are
// out of.
func (s *scriptV2) event(e rc.Event) {
	s.seen(e)
	switch {
	case e.Type == rc.EventJoined:
		s.rooms.rename(e.Room)
	case e.Type == rc.EventParted:
		s.rooms.remove(e.Room)
	case e.Type == rc.EventError && e.ID == 0 && e.Room != "" && e.To == "":
		s.rooms.remove(e.Room) // a refused join
	}
}

// topicOf is the topic of room as the client knows it; ok is false when
// we are not in room.
func topicOf(c *rc.Client, room string) (topic string, ok bool) {
	for _, j := range c.Joined() {
		if sameRoom(j.Name, room) {
			return j.Topic, true
		}
	}
	return "", false
}

// roomLine words one room of a /rooms answer.
func roomLine(r rc.RoomInfo) string {
	s := fmt.Sprintf("%s: %d member(s)", r.Name, r.Count)
	if r.Topic != "" {
		s += "; topic: " + r.Topic
	}
	if r.Limit > 0 {
		s += fmt.Sprintf("; limit %d", r.Limit)
	}
	if r.Locked {
		s += "; locked (needs a key)"
	}
	return s
}

// topicLine words /topic's answer.
func topicLine(room, topic string) string {
	if topic == "" {
		return room + " has no topic"
	}
	return "topic of " + room + ": " + topic
}
