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
	noteMsg string // a system note to show
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
						s, err := dial(v.o.Addr)
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
						v.send(loginMsg{name: c.Name(), proto: protoV2})
					}
				case reqChat:
					if v.c == nil {
						continue
					}
					for _, part := range rc.SplitText(r.text) {
						if _, err := v.c.Send(part); err != nil {
							break // the ended event says why
						}
					}
				case reqWho:
					if v.c == nil {
						continue
					}
					c := v.c
					v.wg.Add(1)
					go func() {
						defer v.wg.Done()
						wctx, cancel := context.WithTimeout(ctx, whoTimeout)
						defer cancel()
						names, err := c.Who(wctx)
						v.send(whoMsg{names: names, err: err})
					}()
				case reqQuit:
					leave()
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

// eventsToModel applies v2 events to the model.
func (m *model) events(evs eventsMsg) {
	var lines []string
	flush := func() {
		if len(lines) > 0 {
			m.lastLine = lines[len(lines)-1]
			m.addLines(lines...)
			lines = nil
		}
	}
	for _, e := range evs {
		switch e.Type {
		case rc.EventChat, rc.EventJoin, rc.EventLeave, rc.EventNotice, rc.EventTimeout:
			line := cleanLine(e.Format(m.lang))
			switch {
			case e.Type == rc.EventChat && e.Self:
				line = selfStyle.Render(cleanLine(e.From + " (you): " + e.Text))
			case e.History:
				line = noteStyle.Render(line)
			}
			lines = append(lines, line)
		case rc.EventError:
			flush()
			if e.Code == "removed" {
				// As the classic relay words it; runTUI reports it last.
				line := cleanLine("Admin notice: " + e.Reason)
				m.lastLine = line
				m.addLine(line)
				continue
			}
			m.addLine(warnStyle.Render("* " + cleanLine(e.String())))
		case rc.EventEnded:
			flush()
			if e.Err != nil && !errors.Is(e.Err, rc.ErrEnded) {
				var kicked *rc.KickedError
				if !errors.As(e.Err, &kicked) {
					m.addLine(warnStyle.Render("* " + cleanLine(e.String())))
					m.endErr = e.Err
				}
			}
		case rc.EventMissed, rc.EventThrottled, rc.EventNewSession, rc.EventRestarted:
			flush()
			m.conn = ""
			m.addLine(warnStyle.Render("* " + cleanLine(e.String())))
		case rc.EventReconnecting:
			flush()
			m.conn = "reconnecting ..."
			m.addLine(noteStyle.Render("* " + cleanLine(e.String())))
		case rc.EventRestarting:
			flush()
			m.conn = "relay restarting, waiting ..."
			m.addLine(noteStyle.Render("* " + cleanLine(e.String())))
		case rc.EventResumed:
			flush()
			m.conn = ""
			m.addLine(noteStyle.Render("* " + cleanLine(e.String())))
		}
	}
	flush()
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
