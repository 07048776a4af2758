package main

import (
	"fmt"
	"strings"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
)

// How terminal mode draws its lines: the styles of the status line, of
// system notes, of one's own lines and of warnings; the status line's text;
// and the input line, measured in terminal columns (CJK runes take two) and
// scrolled so that the cursor shows.

// Line styles.
var (
	statusStyle = lipgloss.NewStyle().Reverse(true)
	noteStyle   = lipgloss.NewStyle().Faint(true).Italic(true)
	selfStyle   = lipgloss.NewStyle().Faint(true)
	warnStyle   = lipgloss.NewStyle().Bold(true)
)

// statusText is the status line: who, where, and what is going on. It keeps
// to ASCII punctuation: East Asian "ambiguous" characters such as "·" or "…"
// are two columns wide on terminals set up for CJK, and would shift it.
func (m model) statusText() string {
	var s string
	switch m.state {
	case stateAskName:
		s = fmt.Sprintf("relay %s | type your name and press Enter | Ctrl-C quits", m.addr)
	case stateLoggingIn:
		s = fmt.Sprintf("logging in as %s at %s ...", m.name, m.addr)
	case stateChat:
		s = fmt.Sprintf("%s @ %s", m.name, m.addr)
		if tabs := m.tabs(); tabs != "" {
			s += " | " + tabs + " | ^N/^P switch"
		}
		switch {
		case m.hint != "":
			s += " | " + m.hint
		case m.conn != "":
			s += " | " + m.conn + " | /quit leaves"
		case m.rev >= 1:
			s += " | /help | /quit leaves"
		default:
			s += " | PgUp/PgDn scroll | /quit leaves"
		}
		if m.unread > 0 {
			s += fmt.Sprintf(" | %d new below", m.unread)
		}
	case stateLeaving:
		s = fmt.Sprintf("%s @ %s | leaving ...", m.name, m.addr)
	}
	if m.notice != "" && m.state == stateAskName {
		s = m.notice
	}
	return cleanLine(s)
}

// runeWidth is the display width of one rune, in terminal columns, measured
// the way the renderer measures it (wcwidth): 2 for CJK, 0 for combining.
func runeWidth(r rune) int {
	return ansi.StringWidthWc(string(r))
}

// inputOffset returns the first rune to show of value so that the cursor at
// pos (a rune index) and the rune under it fit in cols columns, starting
// from the previous offset off so the line does not jump while editing.
func inputOffset(value []rune, pos, off, cols int) int {
	if cols < 2 {
		cols = 2
	}
	pos = min(max(pos, 0), len(value))
	off = min(max(off, 0), pos)
	// need is the width from off up to and including the cursor cell.
	need := func(off int) int {
		w := 1 // the cursor cell after the end
		if pos < len(value) {
			w = runeWidth(value[pos])
		}
		for _, r := range value[off:pos] {
			w += runeWidth(r)
		}
		return w
	}
	for off < pos && need(off) > cols {
		off++
	}
	// Show as much as fits when the line got shorter.
	for off > 0 {
		w := 1
		for _, r := range value[off-1:] {
			w += runeWidth(r)
		}
		if w > cols {
			break
		}
		off--
	}
	return off
}

// inputLine renders prompt and the visible part of value within width
// columns, and returns the cursor's column.
func inputLine(prompt string, value []rune, pos, off, width int) (line string, cursorCol int) {
	pw := ansi.StringWidth(prompt)
	if width-pw < 3 { // no room for a wide rune and the cursor: drop the prompt
		prompt, pw = "", 0
	}
	cols := width - pw
	off = inputOffset(value, pos, off, cols)
	pos = min(max(pos, 0), len(value))
	var b strings.Builder
	b.WriteString(prompt)
	used, col := 0, pw
	for i := off; i < len(value); i++ {
		w := runeWidth(value[i])
		if used+w > cols {
			break
		}
		if i < pos {
			col += w
		}
		b.WriteRune(value[i])
		used += w
	}
	return b.String(), min(col, max(width-1, 0))
}
