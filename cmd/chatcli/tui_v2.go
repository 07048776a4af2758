package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	rc "github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// whoTimeout bounds a /who request.
const whoTimeout = 5 * time.Second

// Messages from the v2 controller to the model.
type (
	eventsMsg []rc.Event // v2 events, in order
	whoMsg    struct {
		room  string // "" or main: main
		names []string
		err   error
	} // the answer to /who
	noteMsg  string // a system note to show
	roomsMsg struct {
		rooms []rc.RoomInfo
		err   error
	} // the answer to /rooms
)

// runTUIv2 is terminal mode with --proto auto or v2. The model is the
// classic one; a v2 controller drives it, and hands over to the classic
// controller if auto mode falls back.
func runTUIv2(ctx context.Context, o options, stdin io.Reader, stdout, stderr io.Writer) int {
	var v *controllerV2
	fm, err := runProgram(ctx, o, o.Addr, stdin, stdout, func(send func(tea.Msg), reqs *requestQueue, stop chan struct{}) func(ctx, loginCtx context.Context) {
		v = &controllerV2{o: o, send: send, reqs: reqs, stop: stop}
		return v.loop
	})
	if err != nil {
		fmt.Fprintf(stderr, "chatcli: terminal: %v\n", err)
		return 1
	}
	describe := func(err error) string { return describeV2(o.Addr, err) }
	if v.at != "" {
		describe = func(err error) string { return describeV2(v.at, err) }
	}
	if v.classic != nil {
		describe = v.classic.describe
	}
	switch {
	case errors.Is(fm.err, errEnded):
		msg := describe(errEnded)
		if fm.lastLine != "" {
			msg += "; last message: " + fm.lastLine
		}
		fmt.Fprintln(stderr, msg)
		return 1
	case fm.err != nil:
		fmt.Fprintln(stderr, describe(fm.err))
		return 1
	}
	return 0
}

// controllerV2 owns the v2 client while the program runs.
type controllerV2 struct {
	o    options
	send func(tea.Msg)
	reqs *requestQueue
	stop chan struct{}

	c       *rc.Client
	at      string   // the relay c is with once logged in (set by loop; read after it ended)
	classic *session // set when auto fell back; closed by loop
	wg      sync.WaitGroup
}

func (v *controllerV2) loop(ctx, loginCtx context.Context) {
	defer v.wg.Wait() // /who requests
	closeClient := func() {
		if v.c != nil {
			cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
			v.c.Close(cctx)
			cancel()
			v.at = v.c.Addr()
			v.c = nil
		}
	}
	defer closeClient()
	var events <-chan rc.Event
	leave := func() {
		events = nil // closed by Close: not the relay ending the session
		if v.c != nil {
			fctx, cancel := context.WithTimeout(context.Background(), time.Second)
			v.c.Flush(fctx)
			cancel()
		}
		closeClient()
		v.send(leftMsg{})
	}
	ctxDone := ctx.Done()
	for {
		select {
		case <-v.stop:
			return
		case <-ctxDone:
			ctxDone = nil
			leave()
		case <-v.reqs.ready:
			for r, ok := v.reqs.pop(); ok; r, ok = v.reqs.pop() {
				switch r.kind {
				case reqLogin:
					c, fallback, err := dialV2(loginCtx, v.o, r.text)
					var refused *rc.RefusedError
					switch {
					case fallback:
						s, err := dial(v.o.addrs())
						if err != nil {
							v.send(loginMsg{name: r.text, err: err})
							continue
						}
						v.classic = s
						defer s.close()
						v.send(noteMsg("no answer to v2 hellos: using the classic protocol"))
						v.reqs.pushFront(r)
						cc := &controller{s: s, send: v.send, reqs: v.reqs, stop: v.stop}
						cc.loop(ctx, loginCtx)
						return
					case errors.As(err, &refused):
						v.send(loginMsg{name: r.text, reason: reasonOf(refused)})
					case err != nil:
						v.send(loginMsg{name: r.text, err: err})
					default:
						v.c = c
						events = c.Events()
						v.send(loginMsg{name: c.Name(), proto: protoV2, rev: c.Rev(), addr: c.Addr()})
						if v.o.Room != "" {
							v.request(ctx, request{kind: reqJoin, room: v.o.Room})
						}
					}
				case reqQuit:
					leave()
				default:
					if v.c != nil {
						v.request(ctx, r)
					}
				}
			}
		case e, more := <-events:
			if !more {
				events = nil
				v.send(fatalMsg{errEnded})
				continue
			}
			batch := eventsMsg{e}
		collect:
			for len(batch) < maxBatch && e.Type != rc.EventEnded {
				select {
				case e, more = <-events:
					if !more {
						break collect
					}
					batch = append(batch, e)
				default:
					break collect
				}
			}
			v.send(batch)
			if last := batch[len(batch)-1]; last.Type == rc.EventEnded {
				events = nil
				v.send(endedMsg{})
			}
		}
	}
}

// request runs a chat, join, part, msg, who or rooms request of the model;
// who and rooms wait for the relay on a goroutine of their own.
func (v *controllerV2) request(ctx context.Context, r request) {
	note := func(format string, args ...any) { v.send(noteMsg(fmt.Sprintf(format, args...))) }
	room := r.room
	if room == "" {
		room = wire.RoomMain
	}
	switch r.kind {
	case reqChat:
		for _, part := range rc.SplitTextFor(room, r.text, wire.DefaultMaxDatagram) {
			if _, err := v.c.SendTo(room, part); err != nil {
				if !errors.Is(err, rc.ErrClosed) { // else the ended event says why
					note("not sent to %s: %v", room, err)
				}
				break
			}
		}
	case reqMsg:
		for _, part := range rc.SplitMsgFor(r.to, r.text, wire.DefaultMaxDatagram) {
			if _, err := v.c.Msg(r.to, part); err != nil {
				note("/msg %s: %v", r.to, err)
				break
			}
		}
	case reqJoin:
		if err := v.c.Join(room, r.key); err != nil {
			note("/join %s: %v", room, err)
		}
	case reqPart:
		if err := v.c.Part(room); err != nil {
			note("/part %s: %v", room, err)
		}
	case reqHistory:
		v.fetchHistory(ctx, room, r.before)
	case reqWho, reqRooms:
		c := v.c
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			wctx, cancel := context.WithTimeout(ctx, whoTimeout)
			defer cancel()
			if r.kind == reqRooms {
				rooms, err := c.Rooms(wctx)
				v.send(roomsMsg{rooms: rooms, err: err})
				return
			}
			names, err := c.WhoIn(wctx, room)
			v.send(whoMsg{room: room, names: names, err: err})
		}()
	}
}

// eventsToModel applies v2 events to the model: room events and direct
// messages to their views, the rest to the view shown.
func (m *model) events(evs eventsMsg) {
	var lines []string
	var seqs []uint64
	room := ""
	flush := func() {
		if len(lines) > 0 {
			m.lastLine = lines[len(lines)-1]
			m.addSeqsTo(room, lines, seqs)
			lines, seqs = nil, nil
		}
	}
	note := func(style lipgloss.Style, s string) {
		flush()
		m.addLine(style.Render("* " + cleanLine(s)))
	}
	for _, e := range evs {
		m.remember(e.From, e.To)
		m.remember(e.Names...)
		switch e.Type {
		case rc.EventChat, rc.EventJoin, rc.EventLeave, rc.EventNotice, rc.EventTimeout, rc.EventDM:
			to := e.Room
			if to == "" {
				to = wire.RoomMain
			}
			if e.Type == rc.EventDM {
				to = dmView
				if e.Self {
					m.lastDM = e.To
				} else {
					m.lastDM = e.From
				}
			}
			if to != room {
				flush()
				room = to
			}
			if e.Type == rc.EventNotice && e.Topic != "" && !e.History {
				m.views[m.ensureView(to)].topic = e.Topic
			}
			lines = append(lines, m.eventLineTUI(e))
			seqs = append(seqs, e.Seq)
		case rc.EventJoined:
			flush()
			i := m.ensureView(e.Room)
			m.views[i].name, m.views[i].topic = e.Room, e.Topic
			m.show(i)
			m.addLine(noteStyle.Render("* " + cleanLine(e.Format(m.lang))))
		case rc.EventParted:
			flush()
			m.dropView(e.Room)
			m.addLine(noteStyle.Render("* " + cleanLine(e.Format(m.lang))))
		case rc.EventError:
			flush()
			if e.Code == "removed" {
				// As the classic relay words it; runTUI reports it last.
				line := cleanLine("Admin notice: " + e.Reason)
				m.lastLine = line
				m.addLine(line)
				continue
			}
			note(warnStyle, e.String())
		case rc.EventEnded:
			flush()
			if e.Err != nil && !errors.Is(e.Err, rc.ErrEnded) {
				var kicked *rc.KickedError
				if !errors.As(e.Err, &kicked) {
					note(warnStyle, e.String())
					m.endErr = e.Err
				}
			}
		case rc.EventMissed:
			flush()
			m.conn = ""
			m.addTo(missedView(e), warnStyle.Render("* "+cleanLine(e.String())))
		case rc.EventThrottled, rc.EventNewSession, rc.EventRestarted:
			m.conn = ""
			if e.Type == rc.EventRestarted {
				m.historyRestarted()
			}
			note(warnStyle, e.Format(m.lang))
		case rc.EventReconnecting:
			m.conn = "reconnecting ..."
			note(noteStyle, e.String())
		case rc.EventFailover:
			m.addr = e.Addr
			m.conn = "switching relay ..."
			note(noteStyle, e.Format(m.lang))
		case rc.EventRestarting:
			m.conn = "relay restarting, waiting ..."
			note(noteStyle, e.String())
		case rc.EventResumed:
			m.conn = ""
			note(noteStyle, e.String())
		}
	}
	flush()
}

// missedView is the view a missed event belongs to.
func missedView(e rc.Event) string {
	switch e.Room {
	case "":
		return wire.RoomMain
	case wire.Inbox:
		return dmView
	}
	return e.Room
}

// whoLine formats a /who answer.
func whoLine(w whoMsg) string {
	if w.err != nil {
		return fmt.Sprintf("/who failed: %v", w.err)
	}
	where := "the room"
	if w.room != "" && w.room != wire.RoomMain {
		where = w.room
	}
	return fmt.Sprintf("in %s (%d): %s", where, len(w.names), strings.Join(w.names, ", "))
}
