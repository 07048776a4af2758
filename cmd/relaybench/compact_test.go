//go:build linux

package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// TestReceiverReadsCompactDatagrams: a receiver counts the chats of a
// revision-2 datagram, and the rows of a revision-3 one, as those of the
// full form, and its context line as
// nothing (neither a delivery nor another frame); a datagram of more than
// wire.MaxFramesPerDatagram lines, context lines included, is refused whole
// as a client refuses it.
func TestReceiverReadsCompactDatagrams(t *testing.T) {
	newReceiver := func() *receiver {
		r := &receiver{ms: []*member{{idx: 0}, {idx: 1}}, lay: layout{rooms: 1, size: 2, perRoom: 2}, seqs: 100, stepStart: 1}
		r.st.seen = [][]uint64{{0, 0}, {0, 0}, {0, 0}, {0, 0}}
		r.st.last = []int64{-1, -1, -1, -1}
		r.now = 1000
		return r
	}
	chats := func(from, n int) []*wire.Frame {
		var fs []*wire.Frame
		for q := from; q < from+n; q++ {
			b := bytes.Repeat([]byte("x"), textLen)
			encodeText(b, 1, int64(q), 500)
			fs = append(fs, &wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, Seq: uint64(q + 10), Epoch: "5f3a9c01", From: "m0001", ID: uint64(q + 1), Text: string(b)})
		}
		return fs
	}
	full, compact, rows := wire.EncodeV2(chats(0, 5)...), wire.EncodeV2Compact(chats(0, 5)...), wire.EncodeV2Rows(chats(0, 5)...)
	if !bytes.Contains(compact, []byte(`{"t":"ctx"`)) || len(compact) >= len(full) {
		t.Fatalf("not compact: %q", compact)
	}
	if !bytes.Contains(rows, []byte("\n[\"m0001\",\"")) || len(rows) >= len(compact) {
		t.Fatalf("no rows: %q", rows)
	}
	for _, d := range [][]byte{full, compact, rows} {
		r := newReceiver()
		r.datagram(0, d)
		if r.st.delivered != 5 || r.st.other != 0 || r.st.dups != 0 || r.st.reord != 0 {
			t.Errorf("%q: delivered %d, other %d, dups %d, reordered %d; want 5 chats and nothing else", d, r.st.delivered, r.st.other, r.st.dups, r.st.reord)
		}
	}
	r := newReceiver()
	tooMany := wire.EncodeV2Compact(chats(0, wire.MaxFramesPerDatagram)...) // 64 chats and their context: 65 lines
	r.datagram(0, tooMany)
	if r.st.delivered != 0 || r.st.other != 1 {
		t.Errorf("65 lines: delivered %d, other %d; want it refused whole", r.st.delivered, r.st.other)
	}
	// A member of revision 4 reads up to 256 lines (wide datagrams), as
	// its client does, and refuses 257.
	r = newReceiver()
	r.seqs = 400
	r.st.seen = [][]uint64{make([]uint64, 7), make([]uint64, 7), make([]uint64, 7), make([]uint64, 7)}
	r.ms[0].rev = 4
	r.datagram(0, tooMany)
	if r.st.delivered != wire.MaxFramesPerDatagram || r.st.other != 0 {
		t.Errorf("65 lines at revision 4: delivered %d, other %d; want every chat", r.st.delivered, r.st.other)
	}
	r.datagram(0, wire.EncodeV2Compact(chats(100, wire.MaxLinesWide)...)) // 257 lines
	if r.st.delivered != wire.MaxFramesPerDatagram || r.st.other != 1 {
		t.Errorf("257 lines at revision 4: delivered %d in all, other %d; want it refused whole", r.st.delivered, r.st.other)
	}
}

// TestV2Room100Revisions: v2room100's members offer the newest revision
// unless --v2-rev says otherwise, and a tiny run of the scenario's room
// (100 members, its first offered rate, 300 ms) delivers every chat at
// revisions 4, 3, 2 and 1 alike, each relay answering the revision asked for.
func TestV2Room100Revisions(t *testing.T) {
	for _, args := range [][]string{{"--v2-rev", "5"}, {"--v2-rev", "-1"}, {"--v2-rev", "x"}} {
		if _, err := parse(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parse(%q): no error", args)
		}
	}
	ps, err := presets("v2room100")
	if err != nil || len(ps) != 1 {
		t.Fatal(ps, err)
	}
	p := ps[0]
	self, devnull := selfAndDevNull(t)
	e := &env{tmp: t.TempDir(), self: self, logs: devnull, stderr: devnull, start: time.Now(), relayBin: relayBin(t)}
	for _, tc := range []struct {
		args []string
		rev  uint64
	}{{[]string{"--scenario", "v2room100"}, wire.Rev}, {[]string{"--scenario", "v2room100", "--v2-rev", "3"}, 3}, {[]string{"--scenario", "v2room100", "--v2-rev", "2"}, 2}, {[]string{"--scenario", "v2room100", "--v2-rev", "1"}, 1}} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c, err := parse(tc.args, &bytes.Buffer{})
			if err != nil || c.sc.V2Rev != tc.rev {
				t.Fatalf("V2Rev %d, %v; want %d", c.sc.V2Rev, err, tc.rev)
			}
			sc := c.sc
			sc.Members, sc.Senders, sc.Duration, sc.Drain = p.members, p.senders, 300*time.Millisecond, 5*time.Second
			pr, addr, proto, err := e.startRelay(relayV2, sc.Budget)
			if err != nil {
				t.Fatal(err)
			}
			defer pr.stop()
			sess, err := dial(proto, addr, sc)
			if err != nil {
				t.Fatal(err)
			}
			defer sess.close()
			r, err := sess.step(p.rates[0], pr.cpu)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("revision %d: sent %d, delivered %d of %d, %.3f datagrams and %.1f bytes per delivery", r.V2Rev, r.Sent, r.Delivered, r.Expected, r.RxPerDeliv, r.BytesPerDeliv)
			if r.V2Rev != tc.rev || r.Proto != "v2" {
				t.Errorf("revision %d (%s), want %d", r.V2Rev, r.Proto, tc.rev)
			}
			if r.Sent == 0 || r.Delivered != r.Expected || r.Duplicates != 0 || r.Reordered != 0 || r.Other != 0 || r.Foreign != 0 {
				t.Errorf("sent %d, delivered %d of %d, dups %d, reordered %d, other %d, foreign %d",
					r.Sent, r.Delivered, r.Expected, r.Duplicates, r.Reordered, r.Other, r.Foreign)
			}
			if r.Echoes != r.Sent || r.BytesPerDeliv <= 0 {
				t.Errorf("echoes %d of %d, %.1f bytes per delivery", r.Echoes, r.Sent, r.BytesPerDeliv)
			}
		})
	}
}
