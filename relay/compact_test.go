package relay_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// recvEvents reads c's raw datagrams until n events have come and returns
// the datagrams and the events, context lines applied.
func (c *v2c) recvEvents(n int) (datagrams []string, events []wire.Frame) {
	c.t.Helper()
	for len(events) < n {
		d := c.recv()
		fs, err := wire.DecodeV2Wide(nil, []byte(d))
		if err != nil {
			c.t.Fatalf("%q: %v", d, err)
		}
		datagrams, events = append(datagrams, d), append(events, fs...)
	}
	if len(events) != n {
		c.t.Fatalf("%d events, want %d: %+v", len(events), n, events)
	}
	return datagrams, events
}

// TestRevisionsSideBySide: in one room a classic member, a revision-1 and a
// revision-2 member each get every event once, in order. Events that leave
// together (a datagram of five chats) reach the revision-1 member packed as
// they always were, and the revision-2 member compact: a context line, then
// each event without its room and epoch, and without its seq when it is the
// one after; the same bytes for the revision-2 sender's echo. A repair is
// compact for revision 2 too, and full for revision 1.
func TestRevisionsSideBySide(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) { c.Flood = relay.FloodOff() })
	carol := dial(t, r).login("carol")
	carol.sync("carol")
	one := dialV2(t, r)
	w1, _ := one.loginRev("one", 1)
	carol.expect("one joined the chat room")
	two := dialV2(t, r)
	two.loginRev("two", 2)
	carol.expect("two joined the chat room")
	one.expectT(wire.FrameJoin)
	snd := dialV2(t, r)
	snd.loginRev("snd", 2)
	carol.expect("snd joined the chat room")
	first := one.expectT(wire.FrameJoin).Seq + 1
	if j := two.expectT(wire.FrameJoin); j.From != "snd" || j.Seq != first-1 {
		t.Fatalf("join %+v", j)
	}

	var chats []*wire.Frame
	var want []wire.Frame
	for i := range 5 {
		text := fmt.Sprintf("chat %d <&> \"中文\"", i)
		chats = append(chats, &wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, ID: uint64(i + 1), Text: text})
		want = append(want, wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, Seq: first + uint64(i), Epoch: w1.Epoch, From: "snd", ID: uint64(i + 1), Text: text})
	}
	snd.sendFrames(chats...) // one datagram: its five events are queued before the flush

	for i := range want {
		carol.expect("snd says: " + want[i].Text)
	}
	check := func(who string, c *v2c, compact bool) {
		t.Helper()
		datagrams, got := c.recvEvents(len(want))
		for i := range want {
			if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
				t.Fatalf("%s: event %d is %+v, want %+v", who, i, got[i], want[i])
			}
		}
		at := 0
		for _, d := range datagrams {
			fs, _ := wire.DecodeV2Compact(nil, []byte(d))
			ptrs := make([]*wire.Frame, len(fs))
			for i := range fs {
				ptrs[i] = &want[at+i]
			}
			at += len(fs)
			enc := wire.EncodeV2(ptrs...)
			if compact {
				enc = wire.EncodeV2Compact(ptrs...)
			}
			if d != string(enc) {
				t.Fatalf("%s: datagram\n%s\nwant\n%s", who, d, enc)
			}
		}
		if len(datagrams) != 1 {
			t.Fatalf("%s: %d datagrams for five events queued together, want one", who, len(datagrams))
		}
		d := datagrams[0]
		ctx := fmt.Sprintf(`{"t":"ctx","room":"main","seq":%d,"epoch":"%s"}`+"\n", first, w1.Epoch)
		switch {
		case compact && (!strings.HasPrefix(d, wire.V2Magic+ctx) || strings.Count(d, `"room"`) != 1 || strings.Count(d, `"epoch"`) != 1 || strings.Count(d, `"seq"`) != 1):
			t.Fatalf("%s: not compact:\n%s", who, d)
		case !compact && (strings.Contains(d, `"ctx"`) || strings.Count(d, `"room":"main"`) != 5 || strings.Count(d, `"epoch"`) != 5):
			t.Fatalf("%s: not the full form:\n%s", who, d)
		}
	}
	check("one (revision 1)", one, false)
	check("two (revision 2)", two, true)
	check("snd (revision 2, its echo)", snd, true)

	// Repair: the same events, compact at revision 2, full at revision 1.
	for _, c := range []*v2c{one, two} {
		c.sendFrames(&wire.Frame{T: wire.FrameRepair, Room: wire.RoomMain, FromSeq: first, ToSeq: first + 4})
	}
	check("one's repair", one, false)
	check("two's repair", two, true)
	carol.sync("carol") // and nothing more for the classic member
}

// TestRevision3Rows: five chats that leave together reach a member of
// revision 3 as one datagram of rows ([from, text]: no id, nobody else's
// acknowledgement), their revision-3 sender as rows that keep its ids (its
// echo, its acknowledgement), and a revision-2 member compact as before.
// A repair for revision 3 is rows with their ids.
func TestRevision3Rows(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) { c.Flood = relay.FloodOff() })
	two := dialV2(t, r)
	w, _ := two.loginRev("two", 2)
	three := dialV2(t, r)
	three.loginRev("three", 3)
	two.expectT(wire.FrameJoin)
	snd := dialV2(t, r)
	snd.loginRev("snd", 3)
	first := two.expectT(wire.FrameJoin).Seq + 1
	if j := three.expectT(wire.FrameJoin); j.From != "snd" || j.Seq != first-1 {
		t.Fatalf("join %+v", j)
	}

	var chats []*wire.Frame
	var want, noIDs []wire.Frame
	for i := range 5 {
		text := fmt.Sprintf("chat %d <&> \"中文\"", i)
		chats = append(chats, &wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, ID: uint64(i + 1), Text: text})
		f := wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, Seq: first + uint64(i), Epoch: w.Epoch, From: "snd", ID: uint64(i + 1), Text: text}
		want = append(want, f)
		f.ID = 0
		noIDs = append(noIDs, f)
	}
	snd.sendFrames(chats...) // one datagram: its five events are queued before the flush

	check := func(who string, c *v2c, want []wire.Frame, encode func(...*wire.Frame) []byte) {
		t.Helper()
		datagrams, got := c.recvEvents(len(want))
		if len(datagrams) != 1 {
			t.Fatalf("%s: %d datagrams for five events queued together, want one", who, len(datagrams))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: events\n%+v\nwant\n%+v", who, got, want)
		}
		ptrs := make([]*wire.Frame, len(want))
		for i := range want {
			ptrs[i] = &want[i]
		}
		if enc := string(encode(ptrs...)); datagrams[0] != enc {
			t.Fatalf("%s: datagram\n%s\nwant\n%s", who, datagrams[0], enc)
		}
	}
	check("three (revision 3)", three, noIDs, wire.EncodeV2Rows)
	check("snd (revision 3, its echo)", snd, want, wire.EncodeV2Rows)
	check("two (revision 2)", two, want, wire.EncodeV2Compact)
	if d := wire.EncodeV2Rows(framePtrs(noIDs)...); !strings.Contains(string(d), "\n[\"snd\",\"chat 0 <&> \\\"中文\\\"\"]\n") {
		t.Fatalf("not rows:\n%s", d)
	}

	three.sendFrames(&wire.Frame{T: wire.FrameRepair, Room: wire.RoomMain, FromSeq: first, ToSeq: first + 4})
	check("three's repair", three, want, wire.EncodeV2Rows)
}

func framePtrs(fs []wire.Frame) []*wire.Frame {
	ptrs := make([]*wire.Frame, len(fs))
	for i := range fs {
		ptrs[i] = &fs[i]
	}
	return ptrs
}

// TestRevision4WideDatagrams: 100 chats that leave together reach a member
// of revision 4 on loopback in one datagram of 101 lines (a context line and
// 100 rows, 8,192 bytes allowed), which a receiver of revision 3 would
// refuse, and their revision-4 sender likewise, ids kept; a member of
// revision 3 gets them as before, in datagrams of at most 64 lines. A
// repair of the 100 is one datagram for revision 4 and two for revision 3.
func TestRevision4WideDatagrams(t *testing.T) {
	g := newGate()
	// One shard: the test holds its one sender.
	r := relaytest.Start(t, func(c *relay.Config) {
		c.Observer, c.Workers, c.FanoutShards, c.Flood = g, 4, 1, relay.FloodOff()
		relay.HandOffAlways(c) // the gate holds a worker, not the reader
	})
	t.Cleanup(g.open) // registered after Start's: runs first, so shutdown never waits on the gate
	classic := dial(t, r).login("classic")
	classic.sync("classic")
	three := dialV2(t, r)
	three.loginRev("three", 3)
	classic.expect("three joined the chat room")
	four := dialV2(t, r)
	four.loginRev("four", 4)
	classic.expect("four joined the chat room")
	three.expectT(wire.FrameJoin)
	snd := dialV2(t, r)
	snd.loginRev("snd", 4)
	classic.expect("snd joined the chat room")
	three.expectT(wire.FrameJoin)
	four.expectT(wire.FrameJoin)

	relay.WaitFanoutIdle(r.Server)
	g.arm()
	classic.send("C classic first")
	g.held(t)
	const n = 100
	var chats []*wire.Frame
	for i := range n {
		chats = append(chats, &wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, ID: uint64(i + 1), Text: fmt.Sprintf("c%03d", i)})
	}
	for i := 0; i < n; i += 10 {
		snd.sendFrames(chats[i : i+10]...) // within the relay's 1,024 bytes in
	}
	eventually(t, "chats queued", func() bool { return g.chats() == n+1 })
	g.open()

	var from uint64 // the first of the 100's seq
	for _, c := range []*v2c{three, four} {
		f := c.expectT(wire.FrameChat)
		if f.From != "classic" || f.Text != "first" {
			t.Fatalf("first event %+v", f)
		}
		from = f.Seq + 1
	}
	snd.expectT(wire.FrameChat)
	check := func(who string, c *v2c, datagrams int, ids bool) {
		t.Helper()
		ds, evs := c.recvEvents(n)
		for i, f := range evs {
			wantID := uint64(0)
			if ids {
				wantID = uint64(i + 1)
			}
			if f.T != wire.FrameChat || f.From != "snd" || f.Text != chats[i].Text || f.ID != wantID {
				t.Fatalf("%s: event %d %+v, want snd's %q with id %d", who, i, f, chats[i].Text, wantID)
			}
		}
		if len(ds) != datagrams {
			t.Fatalf("%s: %d chats came in %d datagrams, want %d", who, n, len(ds), datagrams)
		}
		for _, d := range ds {
			lines := strings.Count(d, "\n") - 1
			_, err := wire.DecodeV2Compact(nil, []byte(d))
			switch {
			case lines > wire.MaxFramesPerDatagram && err == nil:
				t.Fatalf("%s: revision 3's decoder read %d lines", who, lines)
			case lines > wire.MaxFramesPerDatagram && datagrams != 1:
				t.Fatalf("%s: a datagram of %d lines", who, lines)
			}
		}
	}
	check("four (revision 4)", four, 1, false)
	check("snd (revision 4, its echo)", snd, 1, true)
	check("three (revision 3)", three, 2, false)
	for i := range n {
		classic.expect("snd says: " + chats[i].Text)
	}

	// A repair is packed for one member, to its revision's bound.
	for _, c := range []*v2c{three, four} {
		c.sendFrames(&wire.Frame{T: wire.FrameRepair, Room: wire.RoomMain, FromSeq: from, ToSeq: from + n - 1})
	}
	check("four's repair", four, 1, true)
	check("three's repair", three, 2, true)
}
