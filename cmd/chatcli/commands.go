package main

import (
	"strings"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// The slash commands of script and terminal mode (v2): lines starting with
// "/" are commands, "//" sends a line starting with "/". With the classic
// protocol every line but a quit is a message, as it always was.

// slash is one parsed command line.
type slash struct {
	name string   // "join", "part", ...
	args []string // the words after the name
	rest string   // everything after the name and the first argument (/msg NAME TEXT: the text)
}

// commands is every command, for /help and completion; the terminal
// adds its own to these.
var commands = []string{"/join", "/part", "/msg", "/rooms", "/who", "/topic", "/history", "/quit"}

// commandHelp words the commands, one line each (in --help and /help).
var commandHelp = []string{
	"/join ROOM [KEY]  join a room (KEY for a locked one) and make it current",
	"/part [ROOM]      leave a room (default: the current one)",
	"/msg NAME TEXT    send NAME a direct message",
	"/rooms            list the relay's rooms: members, topic, limit, locked",
	"/who [ROOM]       list a room's members (default: the current one)",
	"/topic            show the current room's topic",
	"/history [ROOM] [N] older messages of a room (default: the current one, 50; @: direct messages)",
	"/quit             leave the chat",
	"//TEXT            send a line that starts with /",
}

// parseSlash parses a command line. ok is false for a line that is a
// message: one not starting with "/", or starting with "//" (text is then
// the line with one "/" less).
func parseSlash(line string) (s slash, text string, ok bool) {
	if !strings.HasPrefix(line, "/") {
		return slash{}, line, false
	}
	if strings.HasPrefix(line, "//") {
		return slash{}, line[1:], false
	}
	fields := strings.Fields(line[1:])
	if len(fields) == 0 {
		return slash{}, line, false
	}
	s.name, s.args = fields[0], fields[1:]
	if len(s.args) > 0 {
		// The text after the first argument, its spaces kept.
		after := strings.TrimLeft(line[1:], " \t")[len(s.name):]
		after = strings.TrimLeft(after, " \t")[len(s.args[0]):]
		s.rest = strings.TrimLeft(after, " \t")
	}
	return s, "", true
}

// roomStack is the rooms a session is in, in the order they were joined:
// the current room, where lines go, is the last; leaving it makes the one
// before current. It starts with main.
type roomStack struct {
	rooms []string // as the relay names them (as typed until joined)
}

func newRoomStack() *roomStack { return &roomStack{rooms: []string{wire.RoomMain}} }

// current is the room lines go to, "" when in none.
func (rs *roomStack) current() string {
	if len(rs.rooms) == 0 {
		return ""
	}
	return rs.rooms[len(rs.rooms)-1]
}

// push makes room the current one.
func (rs *roomStack) push(room string) {
	rs.remove(room)
	rs.rooms = append(rs.rooms, room)
}

// rename takes the relay's spelling of a room we asked for.
func (rs *roomStack) rename(room string) {
	for i, r := range rs.rooms {
		if sameRoom(r, room) {
			rs.rooms[i] = room
		}
	}
}

// remove forgets room; the one before it becomes current if it was.
func (rs *roomStack) remove(room string) {
	for i, r := range rs.rooms {
		if sameRoom(r, room) {
			rs.rooms = append(rs.rooms[:i], rs.rooms[i+1:]...)
			return
		}
	}
}

// sameRoom reports whether two room names are one room (by compare key).
func sameRoom(a, b string) bool {
	if a == b {
		return true
	}
	_, ka, err1 := wire.CanonicalRoom(a)
	_, kb, err2 := wire.CanonicalRoom(b)
	return err1 == nil && err2 == nil && ka == kb
}
