package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	tea "charm.land/bubbletea/v2"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// runTUI is terminal mode with the classic protocol (--proto classic): the
// model of tui.go driven by a controller over the classic session s.
func runTUI(ctx context.Context, o options, s *session, stdin io.Reader, stdout, stderr io.Writer) int {
	fm, err := runProgram(ctx, o, o.Addr, stdin, stdout, func(send func(tea.Msg), reqs *requestQueue, stop chan struct{}) func(ctx, loginCtx context.Context) {
		return (&controller{s: s, send: send, reqs: reqs, stop: stop}).loop
	})
	if err != nil {
		fmt.Fprintf(stderr, "chatcli: terminal: %v\n", err)
		return 1
	}
	switch {
	case errors.Is(fm.err, errEnded):
		msg := s.describe(errEnded)
		if fm.lastLine != "" {
			msg += "; last message: " + fm.lastLine
		}
		fmt.Fprintln(stderr, msg)
		return 1
	case fm.err != nil:
		fmt.Fprintln(stderr, s.describe(fm.err))
		return 1
	}
	return 0
}

// controller owns the classic session while the program runs: it is the
// network loop of classic terminal mode.
type controller struct {
	s    *session
	send func(tea.Msg) // Program.Send: a no-op once the program has ended
	reqs *requestQueue
	stop chan struct{} // closed by runTUI after the program ended
}

// loop serves requests and datagrams until stop is closed. loginCtx aborts
// a login in progress; ctx ending means leave the chat.
func (c *controller) loop(ctx, loginCtx context.Context) {
	loggedIn := false
	leave := func() {
		if loggedIn {
			c.s.quit(nil)
			loggedIn = false
		}
		c.send(leftMsg{})
	}
	ctxDone := ctx.Done()
	for {
		select {
		case <-c.stop:
			if loggedIn {
				// The program ended without the quit handshake (a second
				// Ctrl-C, or a terminal failure): still say goodbye, once.
				c.s.send(wire.AppendQuit(nil, c.s.name))
			}
			return
		case <-ctxDone:
			ctxDone = nil
			leave()
		case <-c.reqs.ready:
			for r, ok := c.reqs.pop(); ok; r, ok = c.reqs.pop() {
				switch r.kind {
				case reqLogin:
					reason, err := c.s.login(loginCtx, r.text)
					loggedIn = err == nil && reason == ""
					c.send(loginMsg{name: r.text, reason: reason, err: err, addr: c.s.addr})
				case reqChat:
					if !loggedIn {
						continue
					}
					if err := c.s.chat(r.text); err != nil {
						loggedIn = false
						c.send(fatalMsg{err})
					}
				case reqQuit:
					leave()
				}
			}
		case p := <-c.s.in:
			if !loggedIn {
				continue // a stray reply to an earlier login attempt
			}
			loggedIn = c.received(p)
		}
	}
}

// received hands p, and whatever else has already arrived, to the model.
// It reports whether the session is still up.
func (c *controller) received(p packet) bool {
	var lines []string
	var last tea.Msg // endedMsg or fatalMsg, sent after the lines before it
collect:
	for {
		switch kind, line := c.s.classify(p); kind {
		case recvLine:
			lines = append(lines, line)
		case recvExit:
			last = endedMsg{}
			break collect
		case recvError:
			last = fatalMsg{p.err}
			break collect
		}
		if len(lines) >= maxBatch {
			break
		}
		select {
		case p = <-c.s.in:
		default:
			break collect
		}
	}
	if len(lines) > 0 {
		c.send(linesMsg(lines))
	}
	if last != nil {
		c.send(last)
		return false
	}
	return true
}
