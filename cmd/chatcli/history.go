package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	rc "github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// Older history, fetched from the relay (v2 revision 1): in the terminal,
// scrolling up past the top of a room's view (PgUp or Shift-Up at the top)
// loads the page before its oldest line and keeps the view where it was;
// in a script, /history [ROOM] [N] prints the N events before the oldest
// one seen in ROOM.

// historyPage is how many events one scroll past the top loads.
const historyPage = wire.HistoryLimit

// historyTimeout bounds one page's fetch (the client retransmits within
// it; a relay from before history never answers).
const historyTimeout = 30 * time.Second

// historyMsg is the answer to a reqHistory.
type historyMsg struct {
	room   string // the view's room, as asked
	before uint64
	page   rc.History
	err    error
}

// histState is where a view's older history stands.
type histState struct {
	loading bool   // a page is being fetched
	show    bool   // /history asked for it: show its top when it comes
	end     string // "" while older events may be held; else the note shown at the top
	// restarted: the relay restarted since the view began, so its seqs
	// are partly of a sequence that is gone; it loads nothing more.
	restarted bool
}

// Notes at the top of a view whose history goes no further.
const (
	noteNoOlder = "no older messages"
	noteLost    = "older messages are no longer kept"
	noteFull    = "older messages are not shown: a view keeps %d lines"
)

// appendSeqs appends n seqs to dst: those of seqs, or zeros if seqs is nil.
func appendSeqs(dst []uint64, n int, seqs []uint64) []uint64 {
	if seqs != nil {
		return append(dst, seqs...)
	}
	for range n {
		dst = append(dst, 0)
	}
	return dst
}

// trimOldest drops the oldest quarter of v's lines (and their seqs),
// which grew beyond maxHistory. What it drops the relay may still hold:
// scrolling past the top fetches it again.
func (v *view) trimOldest(lines []string) []string {
	cut := len(lines) - maxHistory*3/4
	lines = append(lines[:0:0], lines[cut:]...)
	if cut <= len(v.seqs) {
		v.seqs = append(v.seqs[:0:0], v.seqs[cut:]...)
	}
	if !v.hist.restarted {
		v.hist.end = ""
	}
	return lines
}

// oldestSeq is the seq of the oldest room event in a view's lines, 0 if
// it has none.
func oldestSeq(seqs []uint64) uint64 {
	for _, s := range seqs {
		if s != 0 {
			return s
		}
	}
	return 0
}

// olderPastTop loads older history into the view shown when a scroll up
// began at its top (top: the viewport was at the top before the key).
func (m *model) olderPastTop(top bool) {
	if !top || m.state != stateChat || !m.v2 || m.rev < 1 {
		return
	}
	m.loadOlder()
}

// loadOlder asks for the page before the oldest line of the view shown,
// unless one is on its way or there is none (then it says so).
func (m *model) loadOlder() {
	v := m.current()
	switch {
	case v.hist.restarted:
		m.hint = noteLost
	case v.hist.loading:
		m.hint = "loading older messages ..."
	case v.hist.end != "":
		m.hint = v.hist.end
	default:
		v.hist.loading = true
		m.hint = "loading older messages ..."
		m.reqs.push(request{kind: reqHistory, room: v.name, before: oldestSeq(v.seqs)})
	}
}

// prependHistory puts a fetched page above the oldest line of its view,
// keeping the lines on screen where they were, and notes at the top when
// the room's history goes no further.
func (m *model) prependHistory(msg historyMsg) {
	i := m.viewIndex(msg.room)
	if i < 0 {
		return // we left the room
	}
	v := m.views[i]
	v.hist.loading = false
	if msg.err != nil {
		switch {
		case errors.Is(msg.err, rc.ErrNewEpoch):
			v.hist.end = noteLost
		case errors.Is(msg.err, rc.ErrNotInRoom):
			return
		default:
			if i == m.cur {
				m.hint = "older messages: " + cleanLine(msg.err.Error())
			}
			return
		}
	}
	oldest := oldestSeq(v.seqs)
	var lines []string
	var seqs []uint64
	for _, e := range msg.page.Events {
		if oldest != 0 && e.Seq >= oldest {
			continue // shown already (it arrived while the page was on its way)
		}
		m.remember(e.From, e.To)
		lines = append(lines, historyStamp+m.eventLineTUI(e))
		seqs = append(seqs, e.Seq)
	}
	if msg.err == nil && !msg.page.More {
		v.hist.end = noteNoOlder
		if msg.page.Lost != 0 {
			v.hist.end = noteLost
		}
	}
	cur := &v.lines
	if i == m.cur {
		cur = &m.lines
	}
	if room := maxHistory - len(*cur) - 1; len(lines) > room {
		// The view is full: keep the newest of the page.
		cut := len(lines) - max(room, 0)
		lines, seqs = lines[cut:], seqs[cut:]
		v.hist.end = fmt.Sprintf(noteFull, maxHistory)
	}
	if v.hist.end != "" {
		lines = append([]string{historyStamp + noteStyle.Render("* "+v.hist.end)}, lines...)
		seqs = append([]uint64{0}, seqs...)
	}
	if len(lines) == 0 {
		return
	}
	*cur = append(lines, *cur...)
	v.seqs = append(seqs, v.seqs...)
	show := v.hist.show
	v.hist.show = false
	if i != m.cur {
		return
	}
	// The same lines stay on screen: the offset grows by what was added
	// above them (in screen lines: long ones wrap). After /history, the
	// page shows from its top.
	before := m.vp.TotalLineCount()
	y := m.vp.YOffset()
	m.vp.SetContentLines(m.lines)
	m.vp.SetYOffset(y + m.vp.TotalLineCount() - before)
	if show {
		m.vp.GotoTop()
	}
	m.hint = ""
}

// historyStamp stands where a line's time would be: when an older
// message was sent is not known, only that it came before.
var historyStamp = timeStyle.Render("--:--") + " "

// historyRestarted marks every view's older history as lost: the relay
// restarted, and the seqs shown are those of a sequence that is gone.
func (m *model) historyRestarted() {
	for _, v := range m.views {
		v.hist.restarted = true
	}
}

// fetchHistory fetches one page for the model, on a goroutine of its own.
func (v *controllerV2) fetchHistory(ctx context.Context, room string, before uint64) {
	c := v.c
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		hctx, cancel := context.WithTimeout(ctx, historyTimeout)
		defer cancel()
		page, err := c.FetchHistory(hctx, room, before, historyPage)
		v.send(historyMsg{room: room, before: before, page: page, err: err})
	}()
}

// dmHistoryJSON is a direct message printed by /history (--json): a dm
// as it prints live, with its inbox seq and "history".
type dmHistoryJSON struct {
	Type    string `json:"type"`
	From    string `json:"from"`
	To      string `json:"to"`
	Text    string `json:"text"`
	Seq     uint64 `json:"seq"`
	History bool   `json:"history"`
}

// historyEndJSON closes a /history answer (--json): how many events were
// printed, whether older ones are still held (/history again for them),
// and up to which seq the room's events are lost for good.
type historyEndJSON struct {
	Type  string `json:"type"`
	Room  string `json:"room"`
	Count int    `json:"count"`
	More  bool   `json:"more"`
	Lost  uint64 `json:"lost,omitempty"`
}

// seen records the seq of a room event printed in a script, so that
// /history goes back from the oldest one.
func (s *scriptV2) seen(e rc.Event) {
	if e.Type == rc.EventRestarted {
		s.oldest = nil // a new sequence: the seqs seen mean nothing now
		return
	}
	if !e.IsRoomEvent() || e.Seq == 0 {
		return
	}
	key := historyKey(e.Room)
	if s.oldest == nil {
		s.oldest = make(map[string]uint64)
	}
	if o, ok := s.oldest[key]; !ok || e.Seq < o {
		s.oldest[key] = e.Seq
	}
}

// historyKey is the key of a room in scriptV2.oldest: its compare key.
func historyKey(room string) string {
	switch room {
	case "", wire.RoomMain:
		return wire.RoomMain
	case wire.Inbox:
		return wire.Inbox
	}
	if _, key, err := wire.CanonicalRoom(room); err == nil {
		return key
	}
	return room
}

// history runs /history [ROOM] [N]: it prints up to N (default 50) events
// of ROOM (default the current room; @ for direct messages) older than
// the oldest one printed so far, oldest first, then how it ends. Again,
// it goes further back.
func (s *scriptV2) history(cmd slash) {
	room, n := s.rooms.current(), historyPage
	args := cmd.args
	if len(args) > 0 {
		if v, err := strconv.Atoi(args[len(args)-1]); err == nil && len(args) <= 2 {
			n, args = v, args[:len(args)-1]
		}
	}
	switch {
	case len(args) > 1 || n < 1:
		s.warn("usage: /history [ROOM] [N] (N from 1)")
		return
	case len(args) == 1:
		room = args[0]
	}
	if room == "" {
		s.warn("/history: not in any room")
		return
	}
	key := historyKey(room)
	before := s.oldest[key]
	if before == 1 {
		s.historyEnd(room, nil, false, 0)
		return
	}
	var evs []rc.Event
	more, lost := true, uint64(0)
	for len(evs) < n && more {
		ctx, cancel := context.WithTimeout(s.ctx, historyTimeout)
		page, err := s.c.FetchHistory(ctx, room, before, min(n-len(evs), wire.MaxHistoryLimit))
		cancel()
		if err != nil {
			s.warn("/history %s: %v", room, err)
			if len(evs) == 0 {
				return
			}
			break
		}
		if len(page.Events) == 0 {
			more, lost = false, page.Lost
			break
		}
		room = page.Room
		evs = append(page.Events, evs...)
		more, lost = page.More, page.Lost
		before = page.Events[0].Seq
	}
	if len(evs) > 0 {
		if s.oldest == nil {
			s.oldest = make(map[string]uint64)
		}
		s.oldest[key] = evs[0].Seq
	}
	s.historyEnd(room, evs, more, lost)
}

// historyEnd prints a /history answer: the events (our own too), then
// how it ends.
func (s *scriptV2) historyEnd(room string, evs []rc.Event, more bool, lost uint64) {
	for _, e := range evs {
		switch {
		case s.o.JSON && e.Type == rc.EventDM:
			writeLine(s.stdout, marshalAny(dmHistoryJSON{Type: "dm", From: e.From, To: e.To, Text: e.Text, Seq: e.Seq, History: true}))
		case s.o.JSON:
			writeLine(s.stdout, eventJSON(e))
		default:
			writeLine(s.stdout, eventLine(e, s.o.Lang))
		}
	}
	if s.o.JSON {
		writeLine(s.stdout, marshalAny(historyEndJSON{Type: "history_end", Room: room, Count: len(evs), More: more, Lost: lost}))
		return
	}
	var end string
	switch {
	case more:
		end = fmt.Sprintf("%d older message(s) of %s; /history for more", len(evs), room)
	case lost != 0:
		end = fmt.Sprintf("%d older message(s) of %s; %s", len(evs), room, noteLost)
	default:
		end = fmt.Sprintf("%d older message(s) of %s; %s", len(evs), room, noteNoOlder)
	}
	writeLine(s.stdout, "* "+cleanLine(end))
}
