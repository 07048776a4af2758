package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/relaytest"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// pageBack fetches room's history page by page, from the newest, until
// no older events are held, and returns the events oldest first and the
// last page.
func pageBack(t *testing.T, c *client.Client, room string, limit int) (evs []client.Event, last client.History) {
	t.Helper()
	before := uint64(0)
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("more than 100 pages")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		h, err := c.FetchHistory(ctx, room, before, limit)
		cancel()
		if err != nil {
			t.Fatalf("FetchHistory(%s, %d): %v", room, before, err)
		}
		if limit > 0 && len(h.Events) > limit {
			t.Fatalf("a page of %d events, limit %d", len(h.Events), limit)
		}
		evs = append(h.Events, evs...)
		if !h.More {
			return evs, h
		}
		if len(h.Events) == 0 {
			t.Fatalf("an empty page with more: %+v", h)
		}
		before = h.Events[0].Seq
	}
}

// checkRun fails unless evs are the seqs first, first+1, … of one epoch,
// each once, marked history, in room.
func checkRun(t *testing.T, evs []client.Event, room string, first uint64) {
	t.Helper()
	for i, e := range evs {
		if e.Seq != first+uint64(i) || !e.History || e.Room != room || e.Epoch != evs[0].Epoch {
			t.Fatalf("event %d: %+v, want seq %d of %s, history", i, e, first+uint64(i), room)
		}
	}
}

// FetchHistory pages back through a room to where the relay's ring
// begins, and says what is lost before it; our own messages are Self; the
// inbox has a history too; the events never reach Events.
func TestFetchHistoryWithRelay(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) { c.Ring = 128 })
	addr := r.Addr.String()
	alice := dial(t, addr, "alice", 1)
	ka := collect(alice)
	bob := dial(t, addr, "bob", 2, func(c *client.Config) { c.Window = 16 })
	for i := 1; i <= 200; i++ {
		bob.Send(fmt.Sprintf("line %d", i))
	}
	if err := bob.Flush(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ { // after bob's: within the ring
		alice.Send(fmt.Sprintf("mine %d", i))
	}
	// seq 1 alice's join, 2 bob's, 3..205 the chats: the ring keeps 78..205.
	waitFor(t, 20*time.Second, "every chat", func() bool {
		return ka.count(func(e client.Event) bool { return e.Type == client.EventChat }) == 203
	})
	shown := len(ka.events())

	evs, last := pageBack(t, alice, wire.RoomMain, 50)
	if last.Lost != 77 || last.More || len(evs) != 128 {
		t.Fatalf("%d events, last page %+v; want 128 (78..205), lost 77", len(evs), last)
	}
	checkRun(t, evs, wire.RoomMain, 78)
	self := 0
	for _, e := range evs {
		if e.Self != (e.From == "alice") {
			t.Errorf("Self wrong on %+v", e)
		}
		if e.Self {
			self++
		}
	}
	if self != 3 {
		t.Errorf("%d of our own messages in history, want 3", self)
	}

	// The inbox.
	bob.Msg("alice", "psst")
	bob.Msg("alice", "again")
	ka.waitEvent(t, "bob's second dm", func(e client.Event) bool { return e.Type == client.EventDM && e.Text == "again" })
	alice.Msg("bob", "ok")
	ka.waitEvent(t, "our dm's echo", func(e client.Event) bool { return e.Type == client.EventDM && e.Self })
	inbox, last := pageBack(t, alice, wire.Inbox, 0)
	if len(inbox) != 3 || last.Lost != 0 || last.Room != wire.Inbox {
		t.Fatalf("inbox history %+v, last page %+v", inbox, last)
	}
	checkRun(t, inbox, wire.Inbox, 1)
	if inbox[0].Text != "psst" || inbox[0].Type != client.EventDM || !inbox[2].Self || inbox[2].To != "bob" {
		t.Errorf("inbox history %+v", inbox)
	}

	// Nothing of it came as events: only the three dms did since.
	if got := len(ka.events()); got != shown+3 {
		t.Errorf("%d events after the fetches, want %d (the dms)", got, shown+3)
	}
	if _, err := alice.FetchHistory(ctx5(t), "dev", 0, 0); !errors.Is(err, client.ErrNotInRoom) {
		t.Errorf("a room we are not in: %v", err)
	}
}

// Through a path that loses, duplicates and reorders datagrams, every page
// still comes whole: a request, or an answer short of the events its
// history_end counts, is sent again.
func TestFetchHistoryLossy(t *testing.T) {
	r := relaytest.Start(t)
	lp := relaytest.NewLossyProxy(t, r.Addr, relaytest.LossConfig{Seed: 11, Loss: 0.15, Dup: 0.05, Reorder: 0.05, Jitter: time.Millisecond})
	bob := dial(t, r.Addr.String(), "bob", 2, func(c *client.Config) { c.Window = 16 })
	for i := 1; i <= 300; i++ {
		bob.Send(fmt.Sprintf("line %d", i))
	}
	if err := bob.Flush(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	alice := dial(t, lp.Addr().String(), "alice", 1)
	evs, last := pageBack(t, alice, wire.RoomMain, 60)
	// 1 bob's join, 2..301 his lines, 302 alice's join (and perhaps a
	// timeout or more, never before 302).
	if last.Lost != 0 || len(evs) < 302 {
		t.Fatalf("%d events, last page %+v", len(evs), last)
	}
	checkRun(t, evs, wire.RoomMain, 1)
	for i := 1; i <= 300; i++ {
		if e := evs[i]; e.Type != client.EventChat || e.Text != fmt.Sprintf("line %d", i) {
			t.Fatalf("seq %d: %+v", i+1, e)
		}
	}
	if s := lp.Stats(); s.Down.Dropped == 0 || s.Up.Dropped == 0 {
		t.Errorf("the proxy lost nothing: %+v", s)
	}
	t.Logf("proxy %+v", lp.Stats())
}

// A relay of revision 0 has no history.
func TestFetchHistoryRev0(t *testing.T) {
	fr := startFake(t, 0)
	alice := dial(t, fr.addr(), "alice", 1, fast)
	if _, err := alice.FetchHistory(ctx5(t), wire.RoomMain, 0, 0); !errors.Is(err, client.ErrUnsupported) {
		t.Fatalf("FetchHistory with a revision-0 relay: %v", err)
	}
}
