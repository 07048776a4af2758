package main

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"unicode/utf8"

	"charm.land/lipgloss/v2"

	rc "github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// The terminal's views: each room the session is in, and the direct
// messages, has its own history; one is shown, the others count what
// arrives unread. Ctrl-N and Ctrl-P (or Alt-1..9) switch; Enter sends to the
// room shown (in the DMs view: to whoever wrote last). Also here: the
// time on each line, a colour per name, Tab completion, input history,
// the slash commands and /help.

// dmView is the name of the direct messages' view (the inbox's name).
const dmView = wire.Inbox

// maxNames bounds the names remembered for completion.
const maxNames = 10000

// view is one conversation: a room, or the direct messages.
type view struct {
	name   string   // the room as the relay names it; dmView for the DMs
	lines  []string // its history while another view is shown (the shown one's is model.lines)
	unread int      // lines added while another view was shown
	topic  string
	// seqs are the room seq of each of its lines (model.lines while it is
	// shown), 0 for a line that is not a room event; older history is
	// fetched before the first (history.go).
	seqs []uint64
	hist histState
}

// label is how the status line names a view.
func (v *view) label() string {
	if v.name == dmView {
		return "DMs"
	}
	return v.name
}

// Styles of the time and of names.
var timeStyle = lipgloss.NewStyle().Faint(true)

// namePalette are the colours names get: 256-colour indexes readable on
// dark and light backgrounds alike.
var namePalette = []int{31, 32, 33, 35, 36, 37, 38, 39, 63, 64, 67, 70, 74, 97, 98, 130, 133, 136, 160, 166, 167, 172, 178, 202}

// nameColor is name's colour: a hash of the name, so it is the same in
// every view, session and terminal.
func nameColor(name string) lipgloss.Style {
	h := fnv.New32a()
	h.Write([]byte(name))
	return lipgloss.NewStyle().Foreground(lipgloss.ANSIColor(namePalette[h.Sum32()%uint32(len(namePalette))]))
}

// colorName colours name where line starts with it.
func colorName(line, name string) string {
	if name == "" || !strings.HasPrefix(line, name) {
		return line
	}
	return nameColor(name).Render(name) + line[len(name):]
}

// stamp puts the time before each line.
func (m *model) stamp(lines []string) []string {
	t := timeStyle.Render(m.now().Format("15:04")) + " "
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = t + l
	}
	return out
}

// viewIndex is the index of the view of room (by compare key), or -1.
func (m *model) viewIndex(room string) int {
	for i, v := range m.views {
		if v.name == room || (room != dmView && v.name != dmView && sameRoom(v.name, room)) {
			return i
		}
	}
	return -1
}

// ensureView returns the index of room's view, made (last) if need be.
func (m *model) ensureView(room string) int {
	if i := m.viewIndex(room); i >= 0 {
		return i
	}
	m.views = append(m.views, &view{name: room})
	return len(m.views) - 1
}

// current is the view shown.
func (m *model) current() *view { return m.views[m.cur] }

// addTo appends lines to room's view: shown at once if it is the one
// shown, else kept and counted unread.
func (m *model) addTo(room string, lines ...string) { m.addSeqsTo(room, lines, nil) }

// addSeqsTo is addTo with the lines' room seqs (see addSeqLines).
func (m *model) addSeqsTo(room string, lines []string, seqs []uint64) {
	i := m.ensureView(room)
	if i == m.cur {
		m.addSeqLines(lines, seqs)
		return
	}
	v := m.views[i]
	v.lines = append(v.lines, m.stamp(lines)...)
	v.seqs = appendSeqs(v.seqs, len(lines), seqs)
	if len(v.lines) > maxHistory {
		v.lines = v.trimOldest(v.lines)
	}
	v.unread += len(lines)
}

// show switches to view i, at its end.
func (m *model) show(i int) {
	if i < 0 || i >= len(m.views) || i == m.cur {
		return
	}
	m.current().lines = m.lines
	m.cur = i
	v := m.current()
	m.lines, v.lines, v.unread = v.lines, nil, 0
	m.vp.SetContentLines(m.lines)
	m.vp.GotoBottom()
	m.unread = 0
}

// dropView removes room's view (we left the room), showing the one before
// it if it was shown.
func (m *model) dropView(room string) {
	i := m.viewIndex(room)
	if i < 0 || len(m.views) == 1 {
		return
	}
	if i == m.cur {
		m.show(max(i-1, 0))
		if m.cur == i { // it was the first: show the next
			m.show(i + 1)
		}
	}
	m.views = slices.Delete(m.views, i, i+1)
	if m.cur > i {
		m.cur--
	}
}

// tabs is the status line's list of views: the shown one in brackets, the
// others with their unread counts.
func (m *model) tabs() string {
	if len(m.views) < 2 {
		return ""
	}
	var parts []string
	for i, v := range m.views {
		switch {
		case i == m.cur:
			parts = append(parts, "["+v.label()+"]")
		case v.unread > 0:
			parts = append(parts, fmt.Sprintf("%s(%d)", v.label(), v.unread))
		default:
			parts = append(parts, v.label())
		}
	}
	return strings.Join(parts, " ")
}

// remember adds names for completion.
func (m *model) remember(names ...string) {
	for _, n := range names {
		if n != "" && len(m.names) < maxNames {
			m.names[n] = true
		}
	}
}

// complete completes the word before the cursor: a command at the start
// of the line, else a name (or a room after /join, /part, /who). One
// candidate is taken whole; several extend the word to what they share,
// and are listed in the status line.
func (m *model) complete() {
	value := []rune(m.input.Value())
	pos := m.input.Position()
	start := pos
	for start > 0 && value[start-1] != ' ' {
		start--
	}
	word := string(value[start:pos])
	var cands []string
	switch {
	case start == 0 && strings.HasPrefix(word, "/"):
		cands = append(slices.Clone(commands), "/help")
	case strings.HasPrefix(string(value), "/join ") || strings.HasPrefix(string(value), "/part ") || strings.HasPrefix(string(value), "/who "):
		for _, v := range m.views {
			if v.name != dmView {
				cands = append(cands, v.name)
			}
		}
	default:
		for n := range m.names {
			cands = append(cands, n)
		}
	}
	var match []string
	for _, c := range cands {
		if len(c) >= len(word) && strings.EqualFold(c[:len(word)], word) {
			match = append(match, c)
		}
	}
	slices.Sort(match)
	match = slices.Compact(match)
	if len(match) == 0 || word == "" && len(match) > 1 {
		return
	}
	repl := match[0]
	if len(match) > 1 {
		repl = commonPrefix(match)
		if utf8.RuneCountInString(repl) <= utf8.RuneCountInString(word) {
			repl = word // keep what was typed
		}
		m.hint = strings.Join(match, " ")
	} else {
		repl += " "
	}
	nv := string(value[:start]) + repl + string(value[pos:])
	m.input.SetValue(nv)
	m.input.SetCursor(start + utf8.RuneCountInString(repl))
	m.fixInputOffset()
}

// commonPrefix is the longest prefix, case-insensitively, of every string
// (in the first one's case).
func commonPrefix(ss []string) string {
	p := []rune(ss[0])
	for _, s := range ss[1:] {
		r := []rune(s)
		n := 0
		for n < len(p) && n < len(r) && strings.EqualFold(string(p[n]), string(r[n])) {
			n++
		}
		p = p[:n]
	}
	return string(p)
}

// maxInputHistory bounds the lines Up recalls.
const maxInputHistory = 200

// record keeps an entered line for Up and Down.
func (m *model) record(line string) {
	if strings.TrimSpace(line) != "" && (len(m.hist) == 0 || m.hist[len(m.hist)-1] != line) {
		m.hist = append(m.hist, line)
		if len(m.hist) > maxInputHistory {
			m.hist = m.hist[1:]
		}
	}
	m.histPos, m.draft = len(m.hist), ""
}

// recall moves through the entered lines: -1 an older one, +1 a newer one,
// past the newest back to what was being typed.
func (m *model) recall(step int) {
	pos := m.histPos + step
	if pos < 0 || pos > len(m.hist) {
		return
	}
	if m.histPos == len(m.hist) {
		m.draft = m.input.Value()
	}
	m.histPos = pos
	if pos == len(m.hist) {
		m.input.SetValue(m.draft)
	} else {
		m.input.SetValue(m.hist[pos])
	}
	m.input.CursorEnd()
	m.fixInputOffset()
}

// helpLines is /help.
func (m *model) helpLines() []string {
	lines := []string{"commands:"}
	for _, h := range commandHelp {
		lines = append(lines, "  "+h)
	}
	return append(lines,
		"  /help             this list",
		"keys: Ctrl-N / Ctrl-P next / previous view, Alt-1..9 view 1..9; Tab completes commands and names;",
		"  Up / Down recall earlier lines; PgUp / PgDn scroll, Shift-Up / Shift-Down one line, Ctrl-End the end;",
		"  PgUp at the top loads older messages from the relay;",
		"  Enter sends to the room shown (in DMs: to whoever wrote last); Ctrl-C or /quit leaves")
}

// command runs a slash command typed in the terminal (v2). It reports
// false for an unknown command.
func (m *model) command(cmd slash) {
	note := func(s string) { m.addLine(noteStyle.Render("* " + cleanLine(s))) }
	rooms := m.rev >= 1
	needRooms := func() bool {
		if !rooms {
			note("/" + cmd.name + ": the relay has no rooms or direct messages (v2 revision 0)")
		}
		return rooms
	}
	room := m.current().name
	if len(cmd.args) > 0 {
		room = cmd.args[0]
	}
	switch cmd.name {
	case "help":
		for _, l := range m.helpLines() {
			note(l)
		}
	case "join":
		if !needRooms() {
			return
		}
		if len(cmd.args) < 1 || len(cmd.args) > 2 {
			note("usage: /join ROOM [KEY]")
			return
		}
		if _, _, err := wire.CanonicalRoom(cmd.args[0]); err != nil && cmd.args[0] != wire.RoomMain {
			note(fmt.Sprintf("/join: %q is not a room name (1 to %d characters, no spaces, not starting with @)", cmd.args[0], wire.MaxRoomRunes))
			return
		}
		key := ""
		if len(cmd.args) == 2 {
			key = cmd.args[1]
		}
		m.reqs.push(request{kind: reqJoin, room: cmd.args[0], key: key})
	case "part":
		if !needRooms() {
			return
		}
		if room == dmView {
			note("/part: the DMs view is not a room")
			return
		}
		m.reqs.push(request{kind: reqPart, room: room})
	case "msg":
		if !needRooms() {
			return
		}
		if len(cmd.args) < 2 {
			note("usage: /msg NAME TEXT")
			return
		}
		m.lastDM = cmd.args[0]
		m.reqs.push(request{kind: reqMsg, to: cmd.args[0], text: cleanText(cmd.rest)})
	case "rooms":
		if needRooms() {
			m.reqs.push(request{kind: reqRooms})
		}
	case "who":
		if room == dmView {
			room = wire.RoomMain
		}
		if room != wire.RoomMain && !needRooms() {
			return
		}
		m.reqs.push(request{kind: reqWho, room: room})
	case "history":
		// The view's older messages: the page before its oldest line, and
		// the view at its top to show it.
		if !needRooms() {
			return
		}
		if len(cmd.args) > 0 {
			note("/history takes no arguments here: it loads the view's older messages (PgUp at the top does too)")
			return
		}
		m.vp.GotoTop()
		m.loadOlder()
		m.current().hist.show = m.current().hist.loading
	case "topic":
		v := m.current()
		switch {
		case v.name == dmView:
			note("/topic: the DMs view has no topic")
		default:
			note(topicLine(v.name, v.topic))
		}
	default:
		note(fmt.Sprintf("unknown command /%s: /help lists them (// sends a line that starts with /)", cmd.name))
	}
}

// roomsLines words a /rooms answer.
func roomsLines(msg roomsMsg) []string {
	if msg.err != nil {
		return []string{fmt.Sprintf("/rooms failed: %v", msg.err)}
	}
	lines := []string{fmt.Sprintf("%d room(s):", len(msg.rooms))}
	for _, r := range msg.rooms {
		lines = append(lines, "  "+roomLine(r))
	}
	return lines
}

// eventLineTUI is a room event or dm as the terminal shows it: the
// classic wording, the name coloured; our own chats and dms faint.
func (m *model) eventLineTUI(e rc.Event) string {
	line := cleanLine(e.Format(m.lang))
	switch {
	case e.Type == rc.EventChat && e.Self:
		return selfStyle.Render(cleanLine(e.From + " (you): " + e.Text))
	case e.Type == rc.EventDM && e.Self:
		return selfStyle.Render(line)
	case e.History:
		return noteStyle.Render(line)
	}
	return colorName(line, e.From)
}
