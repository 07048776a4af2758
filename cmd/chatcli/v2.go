package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	rc "github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// v2 timing.
const (
	flushTimeout = 10 * time.Second // at the end of input, wait this long for the relay to confirm what was sent
	closeTimeout = 2 * time.Second  // then wait this long for bye
)

// v2Config is the client configuration chatcli uses.
func v2Config(o options, name string) rc.Config {
	return rc.Config{
		Addrs: o.addrs(),
		Name:  name,
		// One message in flight: the room shows a user's lines, and the
		// parts of a long line, in the order they were typed.
		Window:   1,
		MaxQueue: 1 << 16,
	}
}

// dialV2 logs in with v2. fallback reports that auto mode should try the
// classic protocol: nothing answered the hellos.
func dialV2(ctx context.Context, o options, name string) (c *rc.Client, fallback bool, err error) {
	c, err = rc.Dial(ctx, v2Config(o, name))
	if errors.Is(err, rc.ErrNoAnswer) && o.Proto == protoAuto {
		return nil, true, err
	}
	return c, false, err
}

// describeV2 turns a v2 error into the one line printed before exit 1.
func describeV2(addr string, err error) string {
	var kicked *rc.KickedError
	var refused *rc.RefusedError
	switch {
	case errors.Is(err, rc.ErrNoAnswer):
		return fmt.Sprintf("chatcli: no reply from relay at %s (is it running?)", addr)
	case errors.Is(err, rc.ErrUnreachable):
		return fmt.Sprintf("chatcli: relay at %s is unreachable: connection refused (is it running?)", addr)
	case errors.As(err, &kicked), errors.Is(err, rc.ErrEnded):
		// A kick's reason was shown as the admin notice already.
		return fmt.Sprintf("chatcli: the relay at %s ended the session", addr)
	case errors.As(err, &refused):
		return fmt.Sprintf("chatcli: the relay at %s ended the session: %v", addr, err)
	case errors.Is(err, errEnded), errors.Is(err, rc.ErrClosed):
		return fmt.Sprintf("chatcli: the relay at %s ended the session", addr)
	default:
		return fmt.Sprintf("chatcli: relay at %s: %v", addr, err)
	}
}

// fallbackNote is printed when auto mode falls back to classic.
func fallbackNote(addr string) string {
	return fmt.Sprintf("chatcli: no answer to v2 hellos from %s: trying the classic protocol", addr)
}

// runScriptV2 is script mode with --proto auto or v2.
func runScriptV2(ctx context.Context, o options, stdin io.Reader, stdout, stderr io.Writer) int {
	lr := newLineReader(stdin)
	defer lr.stop()

	c, first, code, ok := scriptLoginV2(ctx, o, lr, stderr)
	if !ok {
		return code
	}
	if c == nil { // auto: fall back to classic
		fmt.Fprintln(stderr, fallbackNote(o.Addr))
		s, err := dial(o.addrs())
		if err != nil {
			fmt.Fprintf(stderr, "chatcli: %v\n", err)
			return 1
		}
		defer s.close()
		return runScriptClassic(ctx, o, s, lr, first, stdout, stderr)
	}

	leave := func(code int) int {
		cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		c.Close(cctx)
		return code
	}
	sv := &scriptV2{ctx: ctx, o: o, c: c, rooms: newRoomStack(), stdout: stdout, stderr: stderr}
	if o.Room != "" {
		sv.join(o.Room, "")
	}
	lines := lr.lines
	var flushed chan error // set while waiting for confirmations before leaving
	flushCtx, cancelFlush := context.WithCancel(context.Background())
	defer cancelFlush()
	startLeaving := func() {
		lines = nil
		flushed = make(chan error, 1)
		go func() {
			fctx, cancel := context.WithTimeout(flushCtx, flushTimeout)
			defer cancel()
			flushed <- c.Flush(fctx)
		}()
	}
	events := c.Events()
	for {
		select {
		case <-ctx.Done():
			return leave(0)
		case line, more := <-lines:
			if !more {
				if err := lr.err; err != nil {
					fmt.Fprintf(stderr, "chatcli: reading input: %v\n", err)
					return leave(1)
				}
				startLeaving()
				continue
			}
			if isQuit(line) {
				startLeaving()
				continue
			}
			if !sv.line(line) {
				lines = nil // the session ended: the ended event says why
			}
		case err := <-flushed:
			if err != nil && !errors.Is(err, rc.ErrClosed) {
				fmt.Fprintf(stderr, "chatcli: leaving before the relay confirmed every message: %v\n", err)
			}
			return leave(0)
		case e, more := <-events:
			if !more {
				fmt.Fprintln(stderr, describeV2(c.Addr(), errEnded))
				return leave(1)
			}
			if e.Type == rc.EventEnded {
				fmt.Fprintln(stderr, describeV2(c.Addr(), e.Err))
				return leave(1)
			}
			sv.event(e)
			printEvent(o, e, stdout, stderr)
		}
	}
}

// scriptLoginV2 logs in with --name or the first accepted input line. c is
// nil with ok when auto mode must fall back to classic; first is then the
// name read from input, if any, to try first.
func scriptLoginV2(ctx context.Context, o options, lr *lineReader, stderr io.Writer) (c *rc.Client, first string, code int, ok bool) {
	try := func(name string, fromFlag bool) (c *rc.Client, fallback, next bool, code int) {
		c, fallback, err := dialV2(ctx, o, name)
		var refused *rc.RefusedError
		switch {
		case fallback:
			return nil, true, false, 0
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return nil, false, false, 0
		case errors.As(err, &refused) && fromFlag:
			fmt.Fprintf(stderr, "chatcli: login refused: %s\n", reasonOf(refused))
			return nil, false, false, 1
		case errors.As(err, &refused):
			fmt.Fprintf(stderr, "chatcli: login refused: %s; trying the next line as the name\n", reasonOf(refused))
			return nil, false, true, 0
		case err != nil:
			fmt.Fprintln(stderr, describeV2(o.Addr, err))
			return nil, false, false, 1
		}
		return c, false, false, 0
	}
	if o.Name != "" {
		c, fallback, _, code := try(o.Name, true)
		return c, "", code, c != nil || fallback
	}
	for {
		var line string
		select {
		case <-ctx.Done():
			return nil, "", 0, false
		case l, more := <-lr.lines:
			if !more {
				if lr.err != nil {
					fmt.Fprintf(stderr, "chatcli: reading input: %v\n", lr.err)
				} else {
					fmt.Fprintln(stderr, "chatcli: end of input before a name was accepted")
				}
				return nil, "", 1, false
			}
			line = l
		}
		if isQuit(line) {
			return nil, "", 0, false
		}
		name := strings.TrimSpace(line)
		if name == "" {
			continue
		}
		if why := checkName(name); why != "" {
			fmt.Fprintf(stderr, "chatcli: login refused: %s; trying the next line as the name\n", why)
			continue
		}
		c, fallback, next, code := try(name, false)
		switch {
		case fallback:
			return nil, name, 0, true
		case next:
			continue
		}
		return c, "", code, c != nil
	}
}

func reasonOf(e *rc.RefusedError) string {
	if e.Reason != "" {
		return cleanLine(e.Reason)
	}
	return cleanLine(e.Code)
}

// printEvent writes one event in script mode: a JSON line with --json, a
// classic-style line otherwise (prefixed "[ROOM] " outside main). Session
// state changes go to stderr, but for a failover with --json, which is a
// JSON line too.
func printEvent(o options, e rc.Event, stdout, stderr io.Writer) {
	switch e.Type {
	case rc.EventFailover:
		if o.JSON {
			writeLine(stdout, marshalAny(failoverJSON{Type: "failover", From: e.PrevAddr, To: e.Addr}))
			return
		}
		fmt.Fprintln(stderr, "chatcli: "+cleanLine(e.Format(o.Lang)))
	case rc.EventChat, rc.EventJoin, rc.EventLeave, rc.EventNotice, rc.EventTimeout, rc.EventMissed,
		rc.EventDM, rc.EventJoined, rc.EventParted:
		if o.JSON {
			writeLine(stdout, eventJSON(e))
			return
		}
		if (e.Type == rc.EventChat || e.Type == rc.EventDM) && e.Self {
			return // classic never echoed; scripts see the others
		}
		writeLine(stdout, eventLine(e, o.Lang))
	case rc.EventThrottled, rc.EventError:
		if o.JSON {
			writeLine(stdout, eventJSON(e))
			return
		}
		if e.Type == rc.EventError && e.Code == "removed" {
			// As the classic relay words it.
			writeLine(stdout, cleanLine("Admin notice: "+e.Reason))
			return
		}
		fmt.Fprintln(stderr, "chatcli: "+cleanLine(e.String()))
	default: // reconnecting, resumed, new_session, restarting, restarted
		fmt.Fprintln(stderr, "chatcli: "+cleanLine(e.Format(o.Lang)))
	}
}

// eventLine is an event as a terminal-safe line in the classic wording of
// lang; outside main, prefixed with the room. Missed messages and our own
// joins and parts start with "* ".
func eventLine(e rc.Event, lang string) string {
	line := cleanLine(e.Format(lang))
	switch e.Type {
	case rc.EventDM, rc.EventJoined, rc.EventParted:
		if e.Type != rc.EventDM {
			line = "* " + line
		}
		return line
	case rc.EventMissed:
		line = "* " + line
	}
	if e.Room != "" && e.Room != wire.RoomMain {
		line = "[" + cleanLine(e.Room) + "] " + line
	}
	return line
}

// jsonEvent is the --json form of an event; field order is output order.
type jsonEvent struct {
	Type    string   `json:"type"`
	Room    string   `json:"room,omitempty"`
	From    string   `json:"from,omitempty"`
	Text    string   `json:"text,omitempty"`
	Topic   string   `json:"topic,omitempty"`
	Names   []string `json:"names,omitempty"`
	Seq     uint64   `json:"seq,omitempty"`
	History bool     `json:"history,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	FromSeq uint64   `json:"from_seq,omitempty"`
	ToSeq   uint64   `json:"to_seq,omitempty"`
	Count   uint64   `json:"count,omitempty"`
	RetryMS int64    `json:"retry_ms,omitempty"`
	Code    string   `json:"code,omitempty"`
	ID      uint64   `json:"id,omitempty"`
	To      string   `json:"to,omitempty"`
}

// dmJSON is the --json form of a direct message: exactly these four.
type dmJSON struct {
	Type string `json:"type"`
	From string `json:"from"`
	To   string `json:"to"`
	Text string `json:"text"`
}

// failoverJSON is the --json form of a failover: exactly these three, the
// relay address that stopped answering and the one switched to.
type failoverJSON struct {
	Type string `json:"type"`
	From string `json:"from"`
	To   string `json:"to"`
}

// roomJSON is one room of a /rooms answer (--json).
type roomJSON struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Count  uint64 `json:"count"`
	Topic  string `json:"topic,omitempty"`
	Limit  uint64 `json:"limit,omitempty"`
	Locked bool   `json:"locked,omitempty"`
}

// membersJSON is a /who answer (--json).
type membersJSON struct {
	Type  string   `json:"type"`
	Room  string   `json:"room"`
	Names []string `json:"names"`
}

// topicJSON is a /topic answer (--json).
type topicJSON struct {
	Type  string `json:"type"`
	Room  string `json:"room"`
	Topic string `json:"topic"`
}

func eventJSON(e rc.Event) string {
	if e.Type == rc.EventDM {
		return marshalAny(dmJSON{Type: "dm", From: e.From, To: e.To, Text: e.Text})
	}
	j := jsonEvent{Type: string(e.Type), Room: e.Room, From: e.From, Text: e.Text, Seq: e.Seq, History: e.History}
	switch e.Type {
	case rc.EventJoin, rc.EventLeave:
		if e.Batched() {
			j.Names, j.Count = e.Names, e.Count
		}
		if e.Type == rc.EventLeave && e.Reason != "quit" && e.Reason != "part" {
			j.Reason = e.Reason
		}
	case rc.EventNotice, rc.EventJoined:
		j.Topic = e.Topic
	case rc.EventParted:
		j.Code, j.Reason = e.Code, e.Reason
	case rc.EventMissed:
		j.FromSeq, j.ToSeq, j.Count = e.FromSeq, e.ToSeq, e.Count
	case rc.EventThrottled:
		j.RetryMS = e.RetryAfter.Milliseconds()
		j.Reason = e.Reason
	case rc.EventError:
		j.Code, j.Reason, j.ID, j.To = e.Code, e.Reason, e.ID, e.To
	}
	return marshalLine(j)
}

func marshalLine(j jsonEvent) string { return marshalAny(j) }

// marshalAny is v as one line of JSON, HTML characters as they are.
func marshalAny(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v) // strings, numbers and bools: cannot fail
	return strings.TrimSuffix(b.String(), "\n")
}

// classicJSON maps a classic line to a --json object, best effort, from the
// English wording (names have no spaces, so the first word is the name).
func classicJSON(line string) string {
	if text, ok := strings.CutPrefix(line, "Admin notice: "); ok {
		return marshalLine(jsonEvent{Type: "notice", Text: text})
	}
	name, rest, ok := strings.Cut(line, " ")
	if ok && name != "" {
		switch {
		case strings.HasPrefix(rest, "says: "):
			return marshalLine(jsonEvent{Type: "chat", From: name, Text: strings.TrimPrefix(rest, "says: ")})
		case rest == "joined the chat room":
			return marshalLine(jsonEvent{Type: "join", From: name})
		case rest == "left the chat room":
			return marshalLine(jsonEvent{Type: "leave", From: name})
		case rest == "timed out":
			return marshalLine(jsonEvent{Type: "timeout", From: name})
		case strings.HasPrefix(rest, "was removed by the administrator: "):
			return marshalLine(jsonEvent{Type: "leave", From: name, Reason: strings.TrimPrefix(rest, "was removed by the administrator: ")})
		}
	}
	return marshalLine(jsonEvent{Type: "notice", Text: line})
}
