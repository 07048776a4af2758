package relay_test

import (
	"fmt"
	"testing"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// history asks for room's events before before (0: the newest) and reads
// the answer: the events, each marked history, then history_end, which it
// checks names the room and echoes before.
func (c *v2c) history(room string, before, limit uint64) (evs []wire.Frame, end wire.Frame) {
	c.t.Helper()
	c.sendFrames(&wire.Frame{T: wire.FrameHistory, Room: room, Before: before, Limit: limit})
	for {
		f := c.next()
		if f.T == wire.FrameHistoryEnd {
			if f.Room != room || f.Before != before {
				c.t.Fatalf("history_end %+v for history {room %s, before %d}", f, room, before)
			}
			return evs, f
		}
		if !f.History || f.Seq == 0 || f.Room != room {
			c.t.Fatalf("in a history answer for %s: %+v", room, f)
		}
		evs = append(evs, f)
	}
}

// talk makes talker (a classic member of main) say "line 1" .. "line n",
// all sequenced when it returns.
func talk(talker *client, n int) {
	for i := 1; i <= n; i++ {
		talker.send(fmt.Sprintf("C talker line %d", i))
	}
	talker.sync("talker")
}

// A member paging back through 300 chats gets every event once, in order,
// with its seq and epoch, more on every page but the last, and nothing
// lost; asking before seq 1 gets an empty page, and without before the
// newest page.
func TestHistoryPagesBackToTheStart(t *testing.T) {
	r := relaytest.Start(t) // --ring 4096: everything is held
	talker := dial(t, r).login("talker")
	talk(talker, 300) // seq 1 the join, 2..301 the chats
	carol := dialV2(t, r)
	w, _ := carol.login1("carol") // her join is 302
	if w.Seq != 301 {
		t.Fatalf("welcome at %d, want 301", w.Seq)
	}

	var got []wire.Frame
	before, pages := uint64(302), 0
	for {
		evs, end := carol.history("main", before, 50)
		pages++
		if end.Epoch != w.Epoch || end.Lost != 0 {
			t.Fatalf("page %d: %+v", pages, end)
		}
		if len(evs) == 0 || end.Count != uint64(len(evs)) || end.FromSeq != evs[0].Seq || end.ToSeq != evs[len(evs)-1].Seq || end.ToSeq != before-1 {
			t.Fatalf("page %d before %d: %d events, end %+v", pages, before, len(evs), end)
		}
		if wantMore := end.FromSeq > 1; end.More != wantMore {
			t.Fatalf("page %d: more %v with the first event at seq %d", pages, end.More, end.FromSeq)
		}
		got = append(evs, got...)
		if !end.More {
			break
		}
		before = end.FromSeq
	}
	if pages != 7 || len(got) != 301 {
		t.Fatalf("%d pages, %d events; want 7 pages (six of 50, one of 1), 301 events", pages, len(got))
	}
	for i, f := range got {
		seq := uint64(i + 1)
		if f.Seq != seq || f.Epoch != w.Epoch {
			t.Fatalf("event %d: %+v, want seq %d of epoch %s", i, f, seq, w.Epoch)
		}
		switch {
		case seq == 1 && (f.T != wire.FrameJoin || f.From != "talker"):
			t.Fatalf("seq 1: %+v, want talker's join", f)
		case seq > 1 && (f.T != wire.FrameChat || f.Text != fmt.Sprintf("line %d", seq-1)):
			t.Fatalf("seq %d: %+v, want line %d", seq, f, seq-1)
		}
	}

	// Before the first event there is nothing, and nothing lost.
	if evs, end := carol.history("main", 1, 50); len(evs) != 0 || end.Count != 0 || end.More || end.Lost != 0 || end.FromSeq != 0 {
		t.Fatalf("before 1: %d events, %+v", len(evs), end)
	}
	// Without before: the newest page, her own join last.
	evs, end := carol.history("main", 0, 0)
	if len(evs) != wire.HistoryLimit || end.ToSeq != 302 || end.FromSeq != 302-wire.HistoryLimit+1 || !end.More {
		t.Fatalf("newest page: %d events, %+v; want the default %d up to 302", len(evs), end, wire.HistoryLimit)
	}
	if last := evs[len(evs)-1]; last.T != wire.FrameJoin || last.From != "carol" {
		t.Fatalf("newest event %+v, want carol's join", last)
	}
}

// Beyond the log's history (--ring here) the answer says which events are
// lost, down to seq 1: the page that reaches the ring's start carries what
// is held and lost; a page wholly before it, only lost.
func TestHistoryBeyondTheRingIsReported(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) { c.Ring = 64 })
	talker := dial(t, r).login("talker")
	talk(talker, 300) // 1..301; the ring holds 239..302 once carol's join is 302
	carol := dialV2(t, r)
	carol.login1("carol")

	evs, end := carol.history("main", 302, 50)
	if len(evs) != 50 || end.FromSeq != 252 || end.ToSeq != 301 || !end.More || end.Lost != 0 {
		t.Fatalf("first page: %d events, %+v", len(evs), end)
	}
	evs, end = carol.history("main", 252, 50)
	if len(evs) != 13 || end.FromSeq != 239 || end.ToSeq != 251 || end.Count != 13 || end.More || end.Lost != 238 {
		t.Fatalf("the ring's start: %d events, %+v; want 239..251 and lost 238", len(evs), end)
	}
	for i, f := range evs {
		if f.Seq != uint64(239+i) || f.Text != fmt.Sprintf("line %d", 238+i) {
			t.Fatalf("event %d: %+v", i, f)
		}
	}
	evs, end = carol.history("main", 239, 50)
	if len(evs) != 0 || end.Count != 0 || end.More || end.Lost != 238 {
		t.Fatalf("before the ring: %d events, %+v; want none, lost 238", len(evs), end)
	}
}

// A page is at most wire.MaxHistoryLimit events, and all the history and
// repair frames of one datagram share its repair budget: the second frame
// gets what is left, with more set, and the client asks again.
func TestHistoryLimitAndBudget(t *testing.T) {
	r := relaytest.Start(t)
	talker := dial(t, r).login("talker")
	talk(talker, 600)
	carol := dialV2(t, r)
	carol.login1("carol") // her join is 602

	evs, end := carol.history("main", 602, 1000)
	if len(evs) != wire.MaxHistoryLimit || end.FromSeq != 602-wire.MaxHistoryLimit || !end.More {
		t.Fatalf("limit 1000: %d events, %+v; want %d", len(evs), end, wire.MaxHistoryLimit)
	}

	// Two frames of 200 in one datagram: 200, then the 56 left of 256.
	carol.sendFrames(
		&wire.Frame{T: wire.FrameHistory, Room: "main", Before: 402, Limit: 200},
		&wire.Frame{T: wire.FrameHistory, Room: "main", Before: 202, Limit: 200},
	)
	var counts []uint64
	for len(counts) < 2 {
		if f := carol.next(); f.T == wire.FrameHistoryEnd {
			counts = append(counts, f.Count)
			if !f.More || f.ToSeq != f.Before-1 {
				t.Fatalf("history_end %+v", f)
			}
		}
	}
	if counts[0] != 200 || counts[1] != 56 {
		t.Fatalf("counts %v, want [200 56]: one datagram's budget is 256 events", counts)
	}
}

// History is for rooms one is in, and one's inbox; a revision-0 session
// does not know the frame, which is dropped as unknown.
func TestHistoryRoomsInboxAndRevision(t *testing.T) {
	rec := newRecorder()
	r := relaytest.Start(t, func(c *relay.Config) { c.Observer = rec })
	alice, bob := dialV2(t, r), dialV2(t, r)
	alice.login1("alice")
	bob.login1("bob")
	alice.expectT(wire.FrameJoin) // bob's

	// A room bob is not in (it exists: alice is in it) is refused.
	alice.joinRoom("dev", "")
	bob.sendFrames(&wire.Frame{T: wire.FrameHistory, Room: "dev", Before: 10})
	if e := bob.expectError(wire.CodeNotInRoom); e.Room != "dev" || e.ID != 0 {
		t.Fatalf("error %+v", e)
	}

	// The inbox: bob's direct messages, his own echoed ones too.
	for i, text := range []string{"one", "two", "three"} {
		alice.sendFrames(&wire.Frame{T: wire.FrameMsg, To: "bob", ID: uint64(i + 1), Text: text})
		alice.expectT(wire.FrameDM) // the echo
		if f := bob.expectT(wire.FrameDM); f.Text != text {
			t.Fatalf("dm %+v", f)
		}
	}
	evs, end := bob.history(wire.Inbox, 0, 0)
	if len(evs) != 3 || end.FromSeq != 1 || end.ToSeq != 3 || end.More || end.Lost != 0 {
		t.Fatalf("inbox: %d events, %+v", len(evs), end)
	}
	for i, f := range evs {
		if f.T != wire.FrameDM || f.From != "alice" || f.To != "bob" || f.Seq != uint64(i+1) {
			t.Fatalf("inbox event %d: %+v", i, f)
		}
	}

	// A revision-0 session: dropped without an answer (the pong that
	// follows comes first), counted.
	old := dialV2(t, r)
	old.login("old")
	old.settle()
	drops := rec.drop(relay.DropUnknownVerb)
	old.sendFrames(&wire.Frame{T: wire.FrameHistory, Room: "main"}, &wire.Frame{T: wire.FramePing, Room: "main", Last: 1 << 40})
	if f := old.next(); f.T != wire.FramePong {
		t.Fatalf("revision 0: got %+v, want only the pong", f)
	}
	if got := rec.drop(relay.DropUnknownVerb); got != drops+1 {
		t.Fatalf("unknown-frame drops %d, want %d", got, drops+1)
	}
}
