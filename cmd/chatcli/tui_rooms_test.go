package main

import (
	"context"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rc "github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// v2Peer is a v2 member driven by the test through the client engine; it
// keeps the events it receives.
type v2Peer struct {
	*rc.Client
	done chan struct{}
	mu   sync.Mutex // protects evs
	evs  []rc.Event
}

func dialPeer(t *testing.T, addr, name string) *v2Peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rc.Dial(ctx, rc.Config{Addr: addr, Name: name, Rand: rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	p := &v2Peer{Client: c, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for e := range c.Events() {
			p.mu.Lock()
			p.evs = append(p.evs, e)
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c.Close(cctx)
		<-p.done
	})
	return p
}

func (p *v2Peer) waitFor(t *testing.T, what string, f func(rc.Event) bool) {
	t.Helper()
	waitFor(t, 5*time.Second, what, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, e := range p.evs {
			if f(e) {
				return true
			}
		}
		return false
	})
}

// A real terminal with rooms: --room starts in dev, what arrives in main
// and as a direct message is counted in the status line, Ctrl-P and Alt-3
// switch views, Enter in the DMs view answers, and lines carry the time.
func TestTUIRoomsUnderTmux(t *testing.T) {
	bin := buildChatcli(t)
	r := relaytest.Start(t)
	addr := r.Addr.String()
	p := startTmux(t, bin, "--name", "alice", "--room", "dev", addr)
	status := func(l []string) string { return l[len(l)-2] }
	p.waitScreen("dev's view", func(l []string) bool { return strings.Contains(status(l), "main [dev]") })

	bob := dialPeer(t, addr, "bob")
	bob.Join("dev", "")
	p.waitScreen("bob's join in dev", func(l []string) bool { return hasLine(strings.Join(l, "\n"), "bob joined the chat room") })
	bob.SendTo("dev", "in dev")
	p.waitScreen("bob's dev message", func(l []string) bool { return hasLine(strings.Join(l, "\n"), "bob says: in dev") })
	// main's unread count goes up by one (bob's join there may count too).
	unreadMain := func(l []string) int {
		n := 0
		if m := regexp.MustCompile(`main\((\d+)\) \[dev\]`).FindStringSubmatch(status(l)); m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		return n
	}
	before := unreadMain(p.capture())
	bob.Send("in main")
	p.waitScreen("main's unread count", func(l []string) bool { return unreadMain(l) == before+1 })
	bob.Msg("alice", "psst")
	p.waitScreen("the DMs' unread count", func(l []string) bool { return strings.Contains(status(l), "[dev] DMs(1)") })
	if hasLine(strings.Join(p.capture(), "\n"), "bob says: in main") {
		t.Error("main's message shown in dev's view")
	}

	p.must("send-keys", "-t", p.session, "C-p")
	p.waitScreen("main's view", func(l []string) bool {
		return strings.Contains(status(l), "[main] dev DMs(1)") && hasLine(strings.Join(l, "\n"), "bob says: in main")
	})
	stamped := regexp.MustCompile(`^\d\d:\d\d bob says: in main$`)
	found := false
	for _, l := range p.captureRaw() {
		found = found || stamped.MatchString(l)
	}
	if !found {
		t.Errorf("no time on the line; screen:\n%s", strings.Join(p.captureRaw(), "\n"))
	}

	p.must("send-keys", "-t", p.session, "M-3")
	p.waitScreen("the DMs view", func(l []string) bool {
		return strings.Contains(status(l), "main dev [DMs]") && hasLine(strings.Join(l, "\n"), "bob whispers: psst")
	})
	p.must("send-keys", "-t", p.session, "-l", "悄悄话")
	p.must("send-keys", "-t", p.session, "Enter")
	bob.waitFor(t, "alice's answer", func(e rc.Event) bool { return e.Type == rc.EventDM && e.From == "alice" && e.Text == "悄悄话" })
	p.waitScreen("alice's own dm", func(l []string) bool { return hasLine(strings.Join(l, "\n"), "you whisper to bob: 悄悄话") })

	p.must("send-keys", "-t", p.session, "C-n")
	p.waitScreen("back to main", func(l []string) bool { return strings.Contains(status(l), "[main] dev DMs") })
	p.must("send-keys", "-t", p.session, "C-c")
	p.waitScreen("chatcli's exit", func(l []string) bool { return hasLine(strings.Join(l, "\n"), "chatcli exited 0") })
}
