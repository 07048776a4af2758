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
		fs, err := wire.DecodeV2Compact(nil, []byte(d))
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
