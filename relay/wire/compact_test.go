package wire

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

type compactVector struct {
	Name       string  `json:"name"`
	DecodeOnly bool    `json:"decode_only"` // a datagram the encoder does not write, but every decoder must read
	Frames     []Frame `json:"frames"`
	Datagram   string  `json:"datagram"`
}

func compactVectors(tb testing.TB) []compactVector {
	return readVectors[compactVector](tb, "compact.json")
}

// rowsVectors are revision 3's (testdata/v2/rows.json).
func rowsVectors(tb testing.TB) []compactVector {
	return readVectors[compactVector](tb, "rows.json")
}

func framePtrs(fs []Frame) []*Frame {
	ptrs := make([]*Frame, len(fs))
	for i := range fs {
		ptrs[i] = &fs[i]
	}
	return ptrs
}

// TestCompactGoldenVectors checks testdata/v2/compact.json (revision 2)
// and rows.json (revision 3) both ways: each datagram decodes, rows read
// and context applied, to its frames, and the frames encode to the
// datagram byte for byte (but for the decode-only ones), and read the same
// in full form. A datagram without a row is a v2 datagram any decoder reads
// line by line; one with a row is refused whole by a decoder of revision 2
// or less, which the relay never sends one to.
func TestCompactGoldenVectors(t *testing.T) {
	for _, set := range []struct {
		name    string
		vectors []compactVector
		encode  func(...*Frame) []byte
	}{{"compact", compactVectors(t), EncodeV2Compact}, {"rows", rowsVectors(t), EncodeV2Rows}} {
		if len(set.vectors) < 10 {
			t.Fatalf("%s: only %d vectors", set.name, len(set.vectors))
		}
		for _, v := range set.vectors {
			t.Run(set.name+"/"+v.Name, func(t *testing.T) {
				got, err := DecodeV2Compact(nil, []byte(v.Datagram))
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if !reflect.DeepEqual(got, v.Frames) {
					t.Fatalf("decode:\n got %+v\nwant %+v", got, v.Frames)
				}
				_, err = DecodeV2(nil, []byte(v.Datagram))
				if hasRow := strings.Contains(v.Datagram, "\n["); hasRow != errors.Is(err, ErrV2BadFrame) || (!hasRow && err != nil) {
					t.Fatalf("a row in it: %v; a revision-1 decoder: %v", hasRow, err)
				}
				if v.DecodeOnly {
					return
				}
				if enc := set.encode(framePtrs(v.Frames)...); string(enc) != v.Datagram {
					t.Fatalf("encode:\n got %q\nwant %q", enc, v.Datagram)
				}
				// A receiver of revision 2 or 3 reads the full form as well.
				full, err := DecodeV2Compact(nil, EncodeV2(framePtrs(v.Frames)...))
				if err != nil || !reflect.DeepEqual(full, v.Frames) {
					t.Fatalf("full form: %v\n got %+v\nwant %+v", err, full, v.Frames)
				}
			})
		}
	}
}

// TestRevision1VectorsReadTheSameAtRevision2: no revision-1 datagram holds
// a context line, so a revision-2 decoder reads each exactly as before, and
// the full-form packer writes the bytes revision 1 always had.
func TestRevision1VectorsReadTheSameAtRevision2(t *testing.T) {
	for _, v := range goldenVectors(t) {
		got, err := DecodeV2Compact(nil, []byte(v.Datagram))
		if err != nil || !reflect.DeepEqual(got, v.Frames) {
			t.Fatalf("%s: %v\n got %+v\nwant %+v", v.Name, err, got, v.Frames)
		}
		p := Packer{Budget: 1 << 16}
		for i := range v.Frames {
			if d, _ := p.Add(AppendFrame(nil, &v.Frames[i]), EventCut{}); d != nil {
				t.Fatalf("%s: split", v.Name)
			}
		}
		if d, n := p.Flush(); string(d) != v.Datagram || n != len(v.Frames) {
			t.Fatalf("%s: packed %q (%d), want %q", v.Name, d, n, v.Datagram)
		}
	}
}

func TestDecodeV2CompactRejects(t *testing.T) {
	tests := []struct {
		in  string
		err error
	}{
		{"CR2\n{\"t\":\"ctx\",\"room\":\"main\",\"seq\":1,\"epoch\":\"e\"}\n", ErrV2NoFrames},
		{"CR2\n{\"t\":\"ctx\"}\n{\"t\":\"ctx\"}", ErrV2NoFrames},
		{"CR2\n{\"t\":\"ctx\",\"seq\":\"1\"}\n{\"t\":\"join\"}\n", ErrV2BadFrame},
		{"CR2\n{\"t\":\"ctx\",\"room\":7}\n{\"t\":\"join\"}\n", ErrV2BadFrame},
		{"CR2\n{\"t\":\"ctx\",\"seq\":-1}\n{\"t\":\"join\"}\n", ErrV2BadFrame},
		{"CR2\n{\"t\":\"ctx\",\"room\":\"main\"\n{\"t\":\"join\"}\n", ErrV2BadFrame},
		{"CR2\n" + strings.Repeat("{\"t\":\"ctx\"}\n{\"t\":\"join\"}\n", MaxFramesPerDatagram/2) + "{\"t\":\"ctx\"}\n", ErrV2TooManyFrames}, // context lines count
		{"L alice", ErrUnknownVerb},
	}
	for _, tt := range tests {
		got, err := DecodeV2Compact(nil, []byte(tt.in))
		if !errors.Is(err, tt.err) || len(got) != 0 {
			t.Errorf("DecodeV2Compact(%q) = %+v, %v; want no frames, %v", tt.in, got, err, tt.err)
		}
	}
	// dst keeps what it held.
	dst := []Frame{{T: "kept"}}
	dst, err := DecodeV2Compact(dst, []byte("CR2\n{\"t\":\"ctx\",\"room\":\"main\",\"seq\":3,\"epoch\":\"e\"}\n{\"t\":\"join\",\"from\":\"a\"}\n"))
	if err != nil || len(dst) != 2 || dst[0].T != "kept" || !reflect.DeepEqual(dst[1], Frame{T: FrameJoin, Room: RoomMain, Seq: 3, Epoch: "e", From: "a"}) {
		t.Fatalf("%+v, %v", dst, err)
	}
}

func TestCutEvent(t *testing.T) {
	ev := Frame{T: FrameChat, Room: RoomMain, Seq: 42, Epoch: "5f3a9c01", From: "alice", ID: 7, Text: "hi"}
	line := func(f Frame) string { return string(AppendFrame(nil, &f)) }
	tests := []struct {
		line string
		seq  uint64 // 0: not cut
	}{
		{line(ev), 42},
		{line(Frame{T: FrameJoin, Room: "a\"b\\c", Seq: 1, Epoch: "\u2028"}), 1},
		{line(Frame{T: "\"", Room: "开发", Seq: math.MaxUint64, Epoch: "e", History: true}), math.MaxUint64},
		{line(Frame{T: FrameMissed, Room: RoomMain, Epoch: "e", FromSeq: 1, ToSeq: 2}), 0}, // no seq
		{line(Frame{T: FrameChat, Seq: 3, Epoch: "e"}), 0},                                 // no room
		{line(Frame{T: FrameChat, Room: RoomMain, Seq: 3, From: "a"}), 0},                  // no epoch
		{`{"t":"chat","seq":3,"room":"main","epoch":"e"}` + "\n", 0},                       // not AppendFrame's order
		{`{"t":"chat","room":"main","seq":03,"epoch":"e"}` + "\n", 0},
		{`{"t":"chat","room":"main","seq":0,"epoch":"e"}` + "\n", 0},
		{`{"t":"chat","room":"main","seq":18446744073709551616,"epoch":"e"}` + "\n", 0},
		{`{"t":"chat","room":"main","seq":1,"epoch":"e"x` + "\n", 0},
		{`{"t":"chat","room":"main","seq":1,"epoch":"e`, 0},
		{`{"t":"chat","room":"ma\`, 0},
		{`{"t":"chat"}`, 0},
		{`{ "t":"chat","room":"main","seq":1,"epoch":"e"}`, 0},
		{"", 0},
	}
	for _, tt := range tests {
		c := CutEvent([]byte(tt.line))
		if c.Seq() != tt.seq || c.ok() != (tt.seq != 0) {
			t.Errorf("CutEvent(%q): seq %d ok %v, want %d", tt.line, c.Seq(), c.ok(), tt.seq)
		}
	}
	l := []byte(line(ev))
	if n := testing.AllocsPerRun(100, func() { CutEvent(l) }); n != 0 {
		t.Errorf("CutEvent: %v allocations", n)
	}
}

// TestPackerBudgetAndLines packs many events in every form (full,
// compact, rows, and rows without the ids of every other event, the copy
// for members who did not send them): every datagram keeps to the budget
// (but one of a single event) and to MaxFramesPerDatagram lines, context
// lines included, carries the events in order, and is byte for byte what
// the encoders write for its events (rows without ids: the same events
// back, an id dropped only where a row was written).
func TestPackerBudgetAndLines(t *testing.T) {
	var events []Frame
	seq := uint64(100)
	for i := 0; i < 300; i++ {
		f := Frame{T: FrameChat, Room: RoomMain, Seq: seq, Epoch: "5f3a9c01", From: "alice", ID: uint64(i + 1), Text: strings.Repeat("x", i%7)}
		switch {
		case i%50 == 49:
			f.Room, f.Epoch = "dev", "77aa0e12" // another room
		case i%31 == 30:
			f.Seq += 3 // a gap
		case i%17 == 16:
			f.T, f.ID, f.From = FrameNotice, 0, "" // never a row
		case i == 150:
			f.Text = strings.Repeat("long ", 400) // more than a budget alone
		}
		seq = f.Seq + 1
		events = append(events, f)
	}
	lines := make([][]byte, len(events))
	for i := range events {
		lines[i] = AppendFrame(nil, &events[i])
	}
	for _, form := range []struct {
		name                 string
		compact, rows, strip bool
		encode               func(...*Frame) []byte
	}{
		{"full", false, false, false, EncodeV2},
		{"compact", true, false, false, EncodeV2Compact},
		{"rows", true, true, false, EncodeV2Rows},
		{"rows without ids", true, true, true, nil},
	} {
		for _, budget := range []int{512, 1200, 8192} {
			p := Packer{Budget: budget, Compact: form.compact, Rows: form.rows}
			var got []Frame
			next, rows := 0, 0
			check := func(d []byte, n int) {
				t.Helper()
				if d == nil {
					return
				}
				if n > 1 && len(d) > budget {
					t.Fatalf("%s budget %d: %d bytes", form.name, budget, len(d))
				}
				fs, err := DecodeV2Compact(nil, d)
				if err != nil || len(fs) != n {
					t.Fatalf("%s budget %d: %v, %d frames for %d events", form.name, budget, err, len(fs), n)
				}
				if form.encode != nil {
					if want := form.encode(framePtrs(events[next : next+n])...); !bytes.Equal(d, want) {
						t.Fatalf("%s: packed\n%q\nwant\n%q", form.name, d, want)
					}
				}
				rows += bytes.Count(d, []byte("\n["))
				next += n
				got = append(got, fs...)
			}
			for i, l := range lines {
				var cut EventCut
				if form.compact {
					cut = CutEvent(l)
				}
				if form.strip && i%2 == 0 {
					cut = cut.WithoutID()
				}
				check(p.Add(l, cut))
			}
			check(p.Flush())
			if d, n := p.Flush(); d != nil || n != 0 {
				t.Fatal("a second flush")
			}
			if len(got) != len(events) {
				t.Fatalf("%s budget %d: %d events back of %d", form.name, budget, len(got), len(events))
			}
			dropped := 0
			for i := range got {
				w := events[i]
				if form.strip && i%2 == 0 && got[i].ID == 0 && w.ID != 0 {
					w.ID = 0
					dropped++
				}
				if !reflect.DeepEqual(got[i], w) {
					t.Fatalf("%s budget %d: event %d\n got %+v\nwant %+v", form.name, budget, i, got[i], events[i])
				}
			}
			switch {
			case form.rows && rows < 200, !form.rows && rows != 0:
				t.Fatalf("%s budget %d: %d rows", form.name, budget, rows)
			case form.strip && (dropped < 100 || dropped > rows):
				t.Fatalf("%s budget %d: %d rows, %d ids dropped", form.name, budget, rows, dropped)
			}
		}
	}
	// The compact form is smaller: what revision 2 is for.
	full, compact := EncodeV2(framePtrs(events[:10])...), EncodeV2Compact(framePtrs(events[:10])...)
	if len(compact) >= len(full)*3/4 {
		t.Errorf("10 chats: %d bytes compact, %d full", len(compact), len(full))
	}
}

// decodeLines decodes a datagram line by line with no bound on the lines,
// then applies the context: what EncodeV2Compact or EncodeV2Rows wrote,
// however long.
func decodeLines(t *testing.T, b []byte) []Frame {
	t.Helper()
	if !IsV2(b) {
		t.Fatalf("no magic: %q", b)
	}
	var fs []Frame
	for _, l := range strings.SplitAfter(string(b[len(V2Magic):]), "\n") {
		if l == "" {
			continue
		}
		var f Frame
		ok := false
		if l[0] == '[' {
			ok = decodeRow(strings.TrimSuffix(l, "\n"), &f) // a row (revision 3)
		} else {
			ok = DecodeFrameInPlace([]byte(l), &f)
		}
		if !ok {
			t.Fatalf("line %q does not decode", l)
		}
		if len(f.Names) == 0 {
			f.Names = nil
		}
		fs = append(fs, f)
	}
	return ApplyContext(fs)
}

// applyContextReference is the rule of docs/PROTOCOL.md written out again,
// line for line, for the fuzz test to hold ApplyContext to.
func applyContextReference(in []Frame) []Frame {
	var out []Frame
	ctx := Frame{} // no context
	for _, f := range in {
		if f.T == "ctx" {
			ctx = Frame{Room: f.Room, Epoch: f.Epoch, Seq: f.Seq}
			continue
		}
		if f.Room == "" {
			f.Room = ctx.Room
		}
		if f.Epoch == "" {
			f.Epoch = ctx.Epoch
		}
		if ctx.Seq != 0 {
			if f.Seq == 0 {
				f.Seq = ctx.Seq
			}
			ctx.Seq = f.Seq + 1
		}
		out = append(out, f)
	}
	return out
}

// FuzzDecodeV2Compact: a datagram decodes at revision 2 or 3 exactly when
// it decodes at revision 1 with its rows (revision 3) read by encoding/json
// and written as objects (rowsToObjects), and holds a frame besides its
// context lines, to the frames the rule gives; and the frames, written
// compact again, and as rows, read back the same.
func FuzzDecodeV2Compact(f *testing.F) {
	for _, v := range compactVectors(f) {
		f.Add([]byte(v.Datagram))
	}
	for _, v := range rowsVectors(f) {
		f.Add([]byte(v.Datagram))
	}
	f.Add([]byte("CR2\n[\"a\",\"b\"]\n{\"t\":\"ctx\",\"seq\":3}\n[\"c\",\"d\",1]\r\n\n[\"e\",\"f\"]"))
	f.Add([]byte("CR2\n" + strings.Repeat("[\"a\",\"b\"]\n", MaxFramesPerDatagram) + "[1]\n"))
	f.Add([]byte("CR2\n{\"t\":\"ctx\",\"room\":\"main\",\"seq\":7,\"epoch\":\"e\"}\n" + strings.Repeat("[\"a\",\"b\"]\n", 100)))
	for _, v := range goldenVectors(f) {
		f.Add([]byte(v.Datagram))
	}
	f.Add([]byte("CR2\n{\"t\":\"ctx\",\"room\":\"main\",\"seq\":18446744073709551615,\"epoch\":\"e\"}\n{\"t\":\"chat\"}\n{\"t\":\"chat\"}\n{\"t\":\"chat\",\"seq\":3}\n"))
	f.Add([]byte("CR2\n{\"t\":\"ctx\",\"room\":null,\"seq\":null,\"Epoch\":\"x\",\"junk\":{\"a\":[true]}}\n{\"t\":\"chat\",\"room\":\"\"}\n"))
	f.Add([]byte("CR2\n{\"t\":\"ctx\",\"room\":\"main\",\"seq\":5,\"epoch\":\"e\"}\n{\"t\":\"ctx\",\"room\":\"dev\"}\n{\"t\":\"join\"}\n{}\n"))
	f.Add([]byte("CR2\n{\"t\":\"ctx\"}\n"))
	f.Add([]byte("CR2\n{\"t\":\"ctx\",\"seq\":1}\n{\"t\":\"ack\",\"id\":1}\n{\"t\":\"ctx\",\"text\":\"\\ud83d\"}\n{\"t\":\"pong\",\"room\":\"\\u0000\"}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		plain, perr := DecodeV2(nil, rowsToObjects(b))
		got, err := DecodeV2Compact(nil, b)
		want := applyContextReference(plain)
		// Revision 4 reads every datagram revisions 2 and 3 read, the same,
		// and differs only where they refuse too many lines.
		if wide, werr := DecodeV2Wide(nil, b); !errors.Is(err, ErrV2TooManyFrames) && (!errors.Is(werr, err) || !reflect.DeepEqual(wide, got)) {
			t.Fatalf("revision 4 reads %q as %v %+v, revision 3 as %v %+v", b, werr, wide, err, got)
		}
		switch {
		case perr != nil:
			if !errors.Is(err, perr) || len(got) != 0 {
				t.Fatalf("revision 1 says %v, revision 2 %v with %d frames", perr, err, len(got))
			}
			return
		case len(want) == 0:
			if !errors.Is(err, ErrV2NoFrames) || len(got) != 0 {
				t.Fatalf("context lines alone: %v, %d frames", err, len(got))
			}
			return
		case err != nil:
			t.Fatalf("revision 2: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decode of %q:\n got %+v\nwant %+v", b, got, want)
		}
		for _, fr := range got {
			if fr.T == FrameCtx {
				t.Fatal("a context line among the frames")
			}
		}
		if again := decodeLines(t, EncodeV2Compact(framePtrs(got)...)); !reflect.DeepEqual(again, got) {
			t.Fatalf("written compact again:\n got %+v\nwant %+v", again, got)
		}
		if again := decodeLines(t, EncodeV2Rows(framePtrs(got)...)); !reflect.DeepEqual(again, got) {
			t.Fatalf("written as rows:\n got %+v\nwant %+v", again, got)
		}
	})
}

// FuzzCompactPacker packs events of varying rooms, epochs and seqs (gaps,
// repeats, the largest seq, frames without some of the three) compact, and
// as rows: the datagrams read back as the events in order (a row may have
// dropped an id it was told to), each within the budget (but one of a
// single event) and MaxFramesPerDatagram lines (MaxLinesWide for
// revision 4).
func FuzzCompactPacker(f *testing.F) {
	f.Add("main,dev", []byte{1, 2, 3, 0x41, 5, 0x86, 7}, "hi", uint16(300))
	f.Add("main", []byte{0xff, 0xfe, 0x7f, 0x3f, 0x3f, 0x3f}, "", uint16(0))
	f.Add("@,开发,\"q\\", []byte{9, 9, 9, 9, 0xc0, 0x30, 0x10}, strings.Repeat("x", 100), uint16(1200))
	f.Add("main", bytes.Repeat([]byte{0}, 150), "x", uint16(8192)) // more than 64 lines: wide at revision 4
	f.Fuzz(func(t *testing.T, rooms string, spec []byte, text string, budget uint16) {
		if !utf8.ValidString(rooms) || !utf8.ValidString(text) || len(spec) > 200 {
			return
		}
		names := strings.Split(rooms, ",")
		var events []Frame
		seq := uint64(1)
		for i, b := range spec {
			fr := Frame{T: FrameChat, Room: names[int(b)%len(names)], From: "a", ID: uint64(i + 1), Text: text}
			switch b >> 6 {
			case 0: // the next seq
			case 1:
				seq += uint64(b & 7) // a gap, or the same seq again
			case 2:
				fr.T = FrameNotice
				fr.Epoch = "other"
			case 3:
				seq = math.MaxUint64 - uint64(b&3)
			}
			fr.Seq = seq
			if b&0x30 == 0x30 {
				fr.Seq = 0 // no seq
			}
			if fr.Epoch == "" && b&0x08 == 0 {
				fr.Epoch = "5f3a9c01"
			}
			seq++
			events = append(events, fr)
		}
		if len(events) == 0 {
			events = nil
		}
		// Compact (revision 2), then as rows (revision 3) with the ids of
		// the events at odd indexes dropped where a row carries them, then
		// so in wide datagrams (revision 4, read by DecodeV2Wide).
		for _, form := range []struct {
			rows     bool
			maxLines int
			decode   func([]Frame, []byte) ([]Frame, error)
		}{{false, 0, DecodeV2Compact}, {true, 0, DecodeV2Compact}, {true, MaxLinesWide, DecodeV2Wide}} {
			rows := form.rows
			p := Packer{Budget: int(budget), Compact: true, Rows: rows, MaxLines: form.maxLines}
			var got []Frame
			take := func(d []byte, n int) {
				if d == nil {
					return
				}
				if n > 1 && len(d) > int(budget) {
					t.Fatalf("%d bytes, budget %d", len(d), budget)
				}
				fs, err := form.decode(nil, d)
				if err != nil || len(fs) != n {
					t.Fatalf("%q: %v, %d frames, want %d", d, err, len(fs), n)
				}
				got = append(got, fs...)
			}
			for i := range events {
				l := AppendFrame(nil, &events[i])
				cut := CutEvent(l)
				if rows && i%2 == 1 {
					cut = cut.WithoutID()
				}
				take(p.Add(l, cut))
			}
			take(p.Flush())
			want := slices.Clone(events)
			for i := range got {
				if rows && i%2 == 1 && i < len(want) && got[i].ID == 0 {
					want[i].ID = 0
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("packed (rows %v):\n got %+v\nwant %+v", rows, got, want)
			}
		}
		if len(events) > 0 {
			if again := decodeLines(t, EncodeV2Compact(framePtrs(events)...)); !reflect.DeepEqual(again, events) {
				t.Fatalf("encoded:\n got %+v\nwant %+v", again, events)
			}
		}
	})
}

// TestPackerMaxLines: a Packer keeps to the receiver's line bound, 64 lines
// below revision 4 and 256 from it (wide datagrams); a datagram of more than
// 64 lines is refused whole by DecodeV2Compact (a receiver of revision 2 or
// 3) and read by DecodeV2Wide, which refuses more than 256.
func TestPackerMaxLines(t *testing.T) {
	if MaxLines(3) != MaxFramesPerDatagram || MaxLines(4) != MaxLinesWide || MaxLinesWide != 256 {
		t.Fatalf("MaxLines(3) = %d, MaxLines(4) = %d", MaxLines(3), MaxLines(4))
	}
	var events []Frame
	for i := range 600 {
		events = append(events, Frame{T: FrameChat, Room: RoomMain, Seq: uint64(100 + i), Epoch: "5f3a9c01", From: "alice", Text: strconv.Itoa(i)})
	}
	for _, tc := range []struct {
		rev      uint64
		maxLines int
		decode   func([]Frame, []byte) ([]Frame, error)
	}{
		{3, 64, DecodeV2Compact},
		{4, 256, DecodeV2Wide},
	} {
		p := PackerFor(tc.rev, 8192) // rows, compact, the revision's bound
		var got []Frame
		var sizes []int
		check := func(d []byte, n int) {
			t.Helper()
			if d == nil {
				return
			}
			lines := bytes.Count(d, []byte("\n")) - 1 // the CR2 line
			if lines > tc.maxLines {
				t.Fatalf("rev %d: a datagram of %d lines", tc.rev, lines)
			}
			fs, err := tc.decode(nil, d)
			if err != nil || len(fs) != n {
				t.Fatalf("rev %d: %v, %d frames for %d events", tc.rev, err, len(fs), n)
			}
			if lines > MaxFramesPerDatagram {
				if _, err := DecodeV2Compact(nil, d); !errors.Is(err, ErrV2TooManyFrames) {
					t.Fatalf("DecodeV2Compact read a datagram of %d lines: %v", lines, err)
				}
			}
			got, sizes = append(got, fs...), append(sizes, n)
		}
		for i := range events {
			l := AppendFrame(nil, &events[i])
			check(p.Add(l, CutEvent(l)))
		}
		check(p.Flush())
		if !reflect.DeepEqual(got, events) {
			t.Fatalf("rev %d: %d events back of %d, not the same", tc.rev, len(got), len(events))
		}
		// Each datagram but the last is full to the line bound: one
		// context line and its rows, far below 8,192 bytes.
		for _, n := range sizes[:len(sizes)-1] {
			if n != tc.maxLines-1 {
				t.Fatalf("rev %d: datagrams of %v events, want %d each but the last", tc.rev, sizes, tc.maxLines-1)
			}
		}
	}
	over := "CR2\n" + strings.Repeat("{\"t\":\"join\",\"room\":\"main\",\"from\":\"a\"}\n", MaxLinesWide+1)
	if fs, err := DecodeV2Wide(nil, []byte(over)); !errors.Is(err, ErrV2TooManyFrames) || len(fs) != 0 {
		t.Fatalf("DecodeV2Wide read %d lines: %d frames, %v", MaxLinesWide+1, len(fs), err)
	}
	if fs, err := DecodeV2Wide(nil, []byte(over[:len(over)-len("{\"t\":\"join\",\"room\":\"main\",\"from\":\"a\"}\n")])); err != nil || len(fs) != MaxLinesWide {
		t.Fatalf("DecodeV2Wide of %d lines: %d frames, %v", MaxLinesWide, len(fs), err)
	}
}
