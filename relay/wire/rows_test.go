package wire

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestRowSizes: the load tool's chat (a 64-byte text, a five-letter name,
// a six-digit seq, a four-digit id) is 158 bytes whole, 112 compact and 77
// as a row, the length of a classic "name says: text" line and its '\n'.
func TestRowSizes(t *testing.T) {
	text := strings.Repeat("t", 64)
	var evs []*Frame
	for i := uint64(0); i < 3; i++ {
		evs = append(evs, &Frame{T: FrameChat, Room: RoomMain, Seq: 123456 + i, Epoch: "5f3a9c01", From: "m0001", ID: 4321 + i, Text: text})
	}
	full := len(AppendFrame(nil, evs[0]))
	two, three := len(EncodeV2Compact(evs[:2]...)), len(EncodeV2Compact(evs...))
	rows2, rows3 := len(EncodeV2Rows(evs[:2]...)), len(EncodeV2Rows(evs...))
	if full != 158 || three-two != 112 {
		t.Errorf("whole %d, compact %d bytes", full, three-two)
	}
	if rows3-rows2 != 77+len(",4323") { // the encoder keeps ids; the relay drops them for all but the sender
		t.Errorf("a row with its id: %d bytes", rows3-rows2)
	}
	// Per 1,200-byte datagram: 7 whole, 10 compact, 14 as rows without
	// their ids (docs/PROTOCOL.md, "Sizes").
	for _, tc := range []struct {
		compact, rows bool
		want          int
	}{{false, false, 7}, {true, false, 10}, {true, true, 14}} {
		p := Packer{Budget: 1200, Compact: tc.compact, Rows: tc.rows}
		for i := uint64(0); i < 100; i++ {
			l := AppendFrame(nil, &Frame{T: FrameChat, Room: RoomMain, Seq: 123456 + i, Epoch: "5f3a9c01", From: "m0001", ID: 4321 + i, Text: text})
			if d, n := p.Add(l, CutEvent(l).WithoutID()); d != nil {
				if n != tc.want {
					t.Errorf("compact %v rows %v: %d chats in %d bytes, want %d", tc.compact, tc.rows, n, len(d), tc.want)
				}
				break
			}
		}
	}
	l0, l1 := AppendFrame(nil, evs[0]), AppendFrame(nil, evs[1])
	c := Compactor{Rows: true}
	c.Append(nil, l0, CutEvent(l0)) // the context and the first
	if got := len(c.Append(nil, l1, CutEvent(l1).WithoutID())); got != 77 {
		t.Errorf("a row without its id: %d bytes", got)
	}
}

func TestDecodeRowRejects(t *testing.T) {
	const ctx = "CR2\n{\"t\":\"ctx\",\"room\":\"main\",\"seq\":1,\"epoch\":\"e\"}\n"
	for _, row := range []string{
		`[]`, `["a"]`, `["a","b",1,2]`, `["a","b","c"]`, `[1,"b"]`, `["a",2]`, `[null,"b"]`, `["a",null]`,
		`["a","b",null]`, `["a","b",-1]`, `["a","b",1.5]`, `["a","b",1e2]`, `["a","b",18446744073709551616]`,
		`["a","b"`, `["a","b"]x`, `["a","b"],`, `["a","b",]`, `[,"a","b"]`, `["a" "b"]`, `[["a"],"b"]`,
		"[\"a\u0001\",\"b\"]", ` ["a","b"]`, `["a\","b"]`, `{"t":"chat"}]`,
	} {
		in := ctx + row + "\n"
		if got, err := DecodeV2Compact(nil, []byte(in)); !errors.Is(err, ErrV2BadFrame) || len(got) != 0 {
			t.Errorf("DecodeV2Compact(%q) = %+v, %v; want %v", in, got, err, ErrV2BadFrame)
		}
		if f, ok := rowReference(row); ok && row[0] == '[' { // a line starts with its bracket, as with objects
			t.Errorf("encoding/json reads %q as %+v", row, f)
		}
	}
	// The relay's own reader (revision 2 and before) refuses a row whole.
	if got, err := DecodeV2InPlace(nil, []byte(ctx+`["a","b"]`+"\n")); !errors.Is(err, ErrV2BadFrame) || len(got) != 0 {
		t.Errorf("DecodeV2InPlace: %+v, %v", got, err)
	}
}

func TestCutEventRows(t *testing.T) {
	line := func(f Frame) string { return string(AppendFrame(nil, &f)) }
	ev := Frame{T: FrameChat, Room: RoomMain, Seq: 42, Epoch: "e", From: "alice", ID: 7, Text: "hi"}
	noID, hist, dm := ev, ev, ev
	noID.ID = 0
	hist.History = true
	dm.T, dm.To = FrameDM, "bob"
	tests := []struct {
		line   string
		row    bool
		hasID  bool
		isRow  string // the row, if any
		noIDAs string // and without its id
	}{
		{line(ev), true, true, `["alice","hi",7]`, `["alice","hi"]`},
		{line(noID), true, false, `["alice","hi"]`, `["alice","hi"]`},
		{line(Frame{T: FrameChat, Room: RoomMain, Seq: 1, Epoch: "e", From: "\"q\"", ID: 18446744073709551615, Text: "a\nb"}), true, true, `["\"q\"","a\nb",18446744073709551615]`, `["\"q\"","a\nb"]`},
		{line(hist), false, false, "", ""},
		{line(dm), false, false, "", ""},
		{line(Frame{T: FrameJoin, Room: RoomMain, Seq: 1, Epoch: "e", From: "a"}), false, false, "", ""},
		{line(Frame{T: FrameChat, Room: RoomMain, Seq: 1, Epoch: "e", From: "a"}), false, false, "", ""}, // no text
		{line(Frame{T: FrameChat, Room: RoomMain, Seq: 1, Epoch: "e", Text: "a"}), false, false, "", ""}, // no from
		{`{"t":"chat","room":"main","seq":1,"epoch":"e","from":"a","id":07,"text":"b"}` + "\n", false, false, "", ""},
		{`{"t":"chat","room":"main","seq":1,"epoch":"e","from":"a","id":18446744073709551616,"text":"b"}` + "\n", false, false, "", ""},
		{`{"t":"chat","room":"main","seq":1,"epoch":"e","from":"a","text":"b"} ` + "\n", false, false, "", ""},
		{`{"t":"chat","room":"main","seq":1,"epoch":"e","from":"a","text":"b"}`, true, false, `["a","b"]`, `["a","b"]`},
	}
	for _, tt := range tests {
		l := []byte(tt.line)
		c := CutEvent(l)
		if !c.ok() || c.row() != tt.row || c.HasID() != tt.hasID {
			t.Errorf("CutEvent(%q): ok %v row %v id %v", tt.line, c.ok(), c.row(), c.HasID())
			continue
		}
		if !tt.row {
			continue
		}
		if got := string(c.appendRow(nil, l)); got != tt.isRow+"\n" {
			t.Errorf("row of %q: %q, want %q", tt.line, got, tt.isRow)
		}
		if got := string(c.WithoutID().appendRow(nil, l)); got != tt.noIDAs+"\n" {
			t.Errorf("row without id of %q: %q, want %q", tt.line, got, tt.noIDAs)
		}
	}
	l := []byte(line(ev))
	if n := testing.AllocsPerRun(100, func() { CutEvent(l) }); n != 0 {
		t.Errorf("CutEvent: %v allocations", n)
	}
}

// rowReference reads a row with encoding/json, as the rule says: an array
// of two strings and an optional unsigned integer, null refused.
func rowReference(line string) (Frame, bool) {
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(line), &raw); err != nil || len(raw) < 2 || len(raw) > 3 {
		return Frame{}, false
	}
	f := Frame{T: FrameChat}
	for k, p := range []*string{&f.From, &f.Text} {
		if raw[k][0] != '"' || json.Unmarshal(raw[k], p) != nil {
			return Frame{}, false
		}
	}
	if len(raw) == 3 && (string(raw[2]) == "null" || json.Unmarshal(raw[2], &f.ID) != nil) {
		return Frame{}, false
	}
	return f, true
}

// rowsToObjects rewrites a datagram's rows as the object lines of the
// frames encoding/json reads them as (a row it refuses: a line no decoder
// reads), for DecodeV2 to decode: the reference of DecodeV2Compact.
func rowsToObjects(b []byte) []byte {
	if !IsV2(b) || !utf8.Valid(b) {
		return b
	}
	out := []byte(V2Magic)
	for i, l := range strings.Split(string(b[len(V2Magic):]), "\n") {
		if i > 0 {
			out = append(out, '\n')
		}
		if t := strings.TrimSuffix(l, "\r"); len(t) > 0 && t[0] == '[' {
			if f, ok := rowReference(t); ok {
				l = strings.TrimSuffix(string(AppendFrame(nil, &f)), "\n")
			} else {
				l = "{"
			}
		}
		out = append(out, l...)
	}
	return out
}

// FuzzDecodeRow holds decodeRow to encoding/json, line by line.
func FuzzDecodeRow(f *testing.F) {
	for _, s := range []string{`["a","b"]`, `["a","b",7]`, ` [ "\u00e9" , "\ud83d" , 0 ] `, `["a","b",1e2]`, `["a",null]`, `[["a"],"b"]`, `["a","b",-0]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if !utf8.ValidString(line) {
			return
		}
		var got Frame
		ok := decodeRow(line, &got)
		want, wok := rowReference(line)
		if ok != wok || (ok && !reflect.DeepEqual(got, want)) {
			t.Fatalf("%q: decodeRow %v %+v; encoding/json %v %+v", line, ok, got, wok, want)
		}
	})
}
