package client

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chatrelay/chatrelay/relay/wire"
)

func chat(seq uint64) *wire.Frame {
	return &wire.Frame{T: wire.FrameChat, Seq: seq, From: "x", ID: seq, Text: "m"}
}

func seqs(evs []Event) []uint64 {
	var out []uint64
	for _, e := range evs {
		out = append(out, e.Seq)
	}
	return out
}

func TestSequencerOrdersAndDedupes(t *testing.T) {
	s := newSequencer(10)
	var out []Event
	for _, seq := range []uint64{11, 13, 13, 11, 14, 12, 12, 15, 9} {
		out = s.add(chat(seq), out)
	}
	if got, want := seqs(out), []uint64{11, 12, 13, 14, 15}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	if s.open() || s.last != 15 {
		t.Errorf("last %d open %v", s.last, s.open())
	}
}

func TestSequencerGaps(t *testing.T) {
	s := newSequencer(0)
	var out []Event
	for _, seq := range []uint64{1, 4, 5, 8} {
		out = s.add(chat(seq), out)
	}
	s.learn(10) // a pong
	if got, want := s.gaps(8), []seqRange{{2, 3}, {6, 7}, {9, 10}}; !slices.Equal(got, want) {
		t.Errorf("gaps %v, want %v", got, want)
	}
	if got, want := s.gaps(2), []seqRange{{2, 3}, {6, 7}}; !slices.Equal(got, want) {
		t.Errorf("gaps(2) %v, want %v", got, want)
	}
	// The relay no longer has 2..3: missed closes that gap.
	out = s.missed(2, 3, out[:0])
	if len(out) != 3 || out[0].Type != EventMissed || out[0].Count != 2 || out[1].Seq != 4 || out[2].Seq != 5 {
		t.Errorf("after missed: %+v", out)
	}
	out = s.add(chat(7), out[:0])
	out = s.add(chat(6), out)
	if got, want := seqs(out), []uint64{6, 7, 8}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	if got, want := s.gaps(8), []seqRange{{9, 10}}; !slices.Equal(got, want) {
		t.Errorf("tail gap %v, want %v", got, want)
	}
	// A far tail beyond the scan window is one range.
	s.learn(8 + maxGapScan + 100)
	if g := s.gaps(8); len(g) != 1 || g[0].from != 9 || g[0].to != 8+maxGapScan+100 {
		t.Errorf("far gap %v", g)
	}
}

// Missed ranges that overlap what we hold report only what is missing.
func TestSequencerMissedAroundHeld(t *testing.T) {
	s := newSequencer(0)
	out := s.add(chat(3), nil)
	out = s.missed(1, 5, out)
	want := []Event{
		{Type: EventMissed, FromSeq: 1, ToSeq: 2, Count: 2},
		roomEvent(chat(3), false),
		{Type: EventMissed, FromSeq: 4, ToSeq: 5, Count: 2},
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("got %+v\nwant %+v", out, want)
	}
	if s.open() || s.last != 5 {
		t.Errorf("last %d", s.last)
	}
	if out := s.missed(1, 4, nil); len(out) != 0 {
		t.Errorf("stale missed delivered %+v", out)
	}
}

// Backlog after a first welcome: history below the base is shown once, in
// arrival order, and never after a live event.
func TestSequencerHistory(t *testing.T) {
	s := newSequencer(20)
	hist := func(seq uint64) *wire.Frame { f := chat(seq); f.History = true; return f }
	var out []Event
	for _, f := range []*wire.Frame{hist(18), hist(19), hist(19), hist(17), hist(20), chat(21), hist(20)} {
		out = s.add(f, out)
	}
	if got, want := seqs(out), []uint64{18, 19, 20, 21}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	for _, e := range out[:3] {
		if !e.History {
			t.Errorf("%+v not marked history", e)
		}
	}
}

// A property: whatever the arrival order, duplication and loss (repaired
// later), every seq comes out once, in order.
func TestSequencerRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		n := uint64(1 + r.IntN(300))
		s := newSequencer(0)
		var arrivals []uint64
		for seq := uint64(1); seq <= n; seq++ {
			for range r.IntN(3) { // 0 (lost), 1 or 2 copies
				arrivals = append(arrivals, seq)
			}
		}
		r.Shuffle(len(arrivals), func(i, j int) { arrivals[i], arrivals[j] = arrivals[j], arrivals[i] })
		var out []Event
		for _, seq := range arrivals {
			out = s.add(chat(seq), out)
		}
		s.learn(n)
		// Repair: the relay answers every gap; some seqs fell out of its ring.
		for s.open() {
			for _, g := range s.gaps(4) {
				for seq := g.from; seq <= g.to; seq++ {
					if seq%17 == 0 {
						out = s.missed(seq, seq, out)
					} else {
						out = s.add(chat(seq), out)
					}
				}
			}
		}
		var next uint64 = 1
		for _, e := range out {
			switch e.Type {
			case EventMissed:
				if e.FromSeq != next {
					t.Fatalf("round %d: missed %d..%d at %d", round, e.FromSeq, e.ToSeq, next)
				}
				next = e.ToSeq + 1
			default:
				if e.Seq != next {
					t.Fatalf("round %d: seq %d at %d", round, e.Seq, next)
				}
				next++
			}
		}
		if next != n+1 {
			t.Fatalf("round %d: ended at %d, want %d", round, next, n+1)
		}
	}
}

func TestOutboxSchedule(t *testing.T) {
	o := newOutbox(2)
	t0 := time.Unix(1000, 0)
	for _, text := range []string{"a", "b", "c"} {
		o.add(wire.RoomMain, "", text)
	}
	ids := func(ms []*outMsg) []uint64 {
		var out []uint64
		for _, m := range ms {
			out = append(out, m.id)
		}
		return out
	}
	if got := ids(o.due(t0)); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("first sends %v, want the window [1 2]", got)
	}
	// Retransmissions: 250 ms, then 500, 1 s, 2 s, 2 s.
	at := t0
	for _, wait := range []time.Duration{250, 500, 1000, 2000, 2000} {
		wait *= time.Millisecond
		if d, _ := o.deadline(); !d.Equal(at.Add(wait)) {
			t.Fatalf("deadline %v after %v, want +%v", d.Sub(at), at.Sub(t0), wait)
		}
		if got := o.due(at.Add(wait - time.Millisecond)); len(got) != 0 {
			t.Fatalf("sent %v early", ids(got))
		}
		at = at.Add(wait)
		if got := ids(o.due(at)); !slices.Equal(got, []uint64{1, 2}) {
			t.Fatalf("retransmit at +%v: %v", at.Sub(t0), got)
		}
	}
	if !o.ack(2) || o.ack(2) || o.ack(3) {
		t.Fatal("ack: want 2 acked once, and 3 (never sent) unknown")
	}
	if got := ids(o.due(at)); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("after ack: %v, want 3 to enter the window", got)
	}
	// Throttled: nothing before the hold ends.
	o.throttle(at.Add(5 * time.Second))
	if got := o.due(at.Add(4 * time.Second)); len(got) != 0 {
		t.Errorf("sent while throttled: %v", ids(got))
	}
	if d, _ := o.deadline(); !d.Equal(at.Add(5 * time.Second)) {
		t.Errorf("deadline while throttled: +%v", d.Sub(at))
	}
	o.renumber()
	if got := ids(o.due(at.Add(time.Second))); !slices.Equal(got, []uint64{1, 2}) || o.msgs[0].text != "a" || o.msgs[1].text != "c" {
		t.Errorf("renumbered: %v", got)
	}
}

func TestSplitText(t *testing.T) {
	for _, text := range []string{
		"short",
		strings.Repeat("汉字abc", 300),
		strings.Repeat(`"\`, 1000),
		strings.Repeat("\u2028x", 500),
		strings.Repeat("😀", 700),
	} {
		parts := SplitText(text)
		if strings.Join(parts, "") != text {
			t.Errorf("parts do not join back")
		}
		for i, p := range parts {
			if !utf8.ValidString(p) || p == "" {
				t.Errorf("part %d invalid or empty", i)
			}
			if !fits(wire.RoomMain, p, wire.DefaultMaxDatagram) {
				t.Errorf("part %d (%d bytes) does not fit", i, len(p))
			}
			if i < len(parts)-1 && fits(wire.RoomMain, p+parts[i+1][:1], wire.DefaultMaxDatagram) && utf8.RuneStart(parts[i+1][0]) && utf8.RuneLen([]rune(parts[i+1])[0]) == 1 {
				t.Errorf("part %d could have been longer", i)
			}
		}
	}
}

func TestPad(t *testing.T) {
	for _, f := range []*wire.Frame{
		{T: wire.FrameHello, Room: "main", Name: "a"},
		{T: wire.FrameResume, Room: "main", Token: strings.Repeat("t", 22), Last: 123456, Cookie: strings.Repeat("c", 40)},
	} {
		pad(f)
		if n := len(wire.EncodeV2(f)); n < minHelloSize || n > minHelloSize+8 {
			t.Errorf("%s padded to %d bytes", f.T, n)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{first: 250 * time.Millisecond, max: 2 * time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.next(nil))
	}
	want := []time.Duration{250, 500, 1000, 2000, 2000, 2000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoff %v", got)
		}
	}
	r := rand.New(rand.NewPCG(1, 1))
	b.reset()
	if d := b.next(r); d < 250*time.Millisecond || d >= 250*time.Millisecond*5/4 {
		t.Errorf("jittered %v", d)
	}
}
