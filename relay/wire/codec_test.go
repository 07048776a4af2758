package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// decodeV2Reference is DecodeV2 as it was written on encoding/json: the
// reference the hand-written decoder must agree with on every input.
func decodeV2Reference(dst []Frame, b []byte) ([]Frame, error) {
	if !IsV2(b) {
		return dst, ErrUnknownVerb
	}
	if !utf8.Valid(b) {
		return dst, ErrBadUTF8
	}
	start := len(dst)
	rest := b[len(V2Magic):]
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if len(dst)-start == MaxFramesPerDatagram {
			return dst[:start], ErrV2TooManyFrames
		}
		if line[0] != '{' {
			return dst[:start], ErrV2BadFrame
		}
		var f Frame
		if err := json.Unmarshal(line, &f); err != nil || f.T == "" {
			return dst[:start], ErrV2BadFrame
		}
		if len(f.Names) == 0 {
			f.Names = nil
		}
		dst = append(dst, f)
	}
	if len(dst) == start {
		return dst, ErrV2NoFrames
	}
	return dst, nil
}

// appendFrameReference is AppendFrame as it was written on encoding/json.
func appendFrameReference(dst []byte, f *Frame) []byte {
	buf := bytes.NewBuffer(dst)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(f); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// checkDecodeAgrees fails t unless both the copying and the aliasing
// decoder return what encoding/json returns for b: the same error, and on
// success the same frames.
func checkDecodeAgrees(t *testing.T, b []byte) {
	t.Helper()
	want, wantErr := decodeV2Reference(nil, b)
	for _, alias := range []bool{false, true} {
		in := bytes.Clone(b)
		got, err := decodeV2(nil, in, alias, false, MaxFramesPerDatagram)
		if !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) {
			t.Fatalf("decode(alias=%v) of %q: error %v, encoding/json says %v", alias, b, err, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decode(alias=%v) of %q:\n got %#v\nwant %#v", alias, b, got, want)
		}
		if !bytes.Equal(in, b) {
			t.Fatalf("decode(alias=%v) modified its input", alias)
		}
	}
}

func TestDecodeV2AgreesWithEncodingJSON(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	lines := []string{
		`{"t":"chat","room":"main","id":1,"text":"hi"}`,
		`{"t":"chat","T":"ping"}`,                // last duplicate wins, by folded name
		`{"T":"chat","ROOM":"main","Seq":3}`,     // case-insensitive names
		`{"t":"chat","ſeq":3,"to_ſeq":4}`,        // U+017F folds to S
		`{"t":"chat","\u212aey":1,"to\u212a":2}`, // U+212A (Kelvin) folds to K
		`{"t":"chat","\u0073eq":5}`,              // an escaped key
		`{"t":"chat","seq":null,"text":null,"history":null,"names":null}`,
		`{"t":null}`,
		`{"t":"a","t":null}`,
		`{"t":"chat","seq":-0}`, `{"t":"chat","retry_ms":-0}`, `{"t":"chat","retry_ms":-12}`,
		`{"t":"chat","seq":1.0}`, `{"t":"chat","seq":1e2}`, `{"t":"chat","seq":01}`,
		`{"t":"chat","seq":18446744073709551615}`, `{"t":"chat","seq":18446744073709551616}`,
		`{"t":"chat","retry_ms":9223372036854775808}`, `{"t":"chat","seq":-}`, `{"t":"chat","seq":1.}`,
		`{"t":"chat","seq":"1"}`, `{"t":"chat","text":1}`, `{"t":"chat","history":1}`, `{"t":"chat","history":"true"}`,
		`{"t":"chat","text":{"a":1}}`, `{"t":"chat","text":[]}`, `{"t":"chat","names":{}}`, `{"t":"chat","names":"a"}`,
		`{"t":"chat","names":[]}`, `{"t":"chat","names":["a",null,"b"]}`, `{"t":"chat","names":[1]}`,
		`{"t":"w","names":["a","b","c"],"names":[null]}`,                        // json decodes over the old slice
		`{"t":"w","names":["a","b","c"],"names":["x"],"names":["y",null,null]}`, // and reuses its backing array
		`{"t":"w","names":["a"],"names":[]}`,
		`{"t":"chat","x":` + deep(9999) + `}`, // depth 10,000 with the frame: accepted
		`{"t":"chat","x":` + deep(10000) + `}`,
		`{"t":"chat","x":{"a":[1,2,{"b":null}],"c":true,"d":false,"e":-1.5e+3}}`,
		`{"t":"chat","x":[1,]}`, `{"t":"chat","x":{"a"}}`, `{"t":"chat","x":{"a":1,}}`, `{"t":"chat","x":tru}`,
		`{"t":"chat",}`, `{"t":"chat"`, `{"t":"chat"}}`, `{"t":"chat"} x`, "{\"t\":\"chat\"} \t\r",
		`{ "t" : "chat" , "id" : 2 }`, "{\"t\":\"ch\tat\"}", "{\"t\":\"a\x01\"}", `{"t":"a\u0000b"}`,
		`{"t":"\"\\\/\b\f\n\r\t"}`, `{"t":"\'"}`, `{"t":"\x"}`, `{"t":"\u12"}`, `{"t":"\u12g4"}`,
		`{"t":"\ud83d\ude00"}`, `{"t":"\ud83d"}`, `{"t":"\ude00\ud83d"}`, `{"t":"\ud83d\u0041"}`, `{"t":"\ud83dx"}`,
		`{"t":"\ud83d\ud83d\ude00"}`, `{"t":"\u2028\u2029"}`, `{"t":"中文 \u4e2d"}`,
		`{"t":"chat","x":"\q"}`, `{"t":"chat","x":"a` + "\x1f" + `"}`, `{"t":"chat","x":"\u00e9"}`,
		`{}`, `{"t":""}`, `{"t":"x","t":""}`,
		`{"t":"history","room":"main","before":302,"limit":50}`, `{"t":"history_end","BEFORE":3,"loſt":4,"Lost":5}`,
		`{"t":"history","before":-1}`, `{"t":"history","before":null,"lost":null}`, `{"t":"history","lost":1.5}`,
		`{"t":"history","before":"3"}`,
	}
	for _, l := range lines {
		checkDecodeAgrees(t, []byte(V2Magic+l+"\n"))
	}
	// Framing: several lines, blank lines, CRs, a missing last newline.
	for _, d := range []string{
		"CR2\n{\"t\":\"a\"}\r\n\r\n \u00a0\n{\"t\":\"b\"}",
		"CR2\n{\"t\":\"a\"}\r\r\n",
		"CR2\n {\"t\":\"a\"}\n",
		"CR2\n{\"t\":\"a\"}\n[]\n",
		"CR2\n" + strings.Repeat("{\"t\":\"p\"}\n", MaxFramesPerDatagram),
		"CR2\n" + strings.Repeat("{\"t\":\"p\"}\n", MaxFramesPerDatagram+1),
		"CR2\n", "CR2", "L alice", "CR2\n{\"t\":\"\xff\"}",
	} {
		checkDecodeAgrees(t, []byte(d))
	}
}

// FuzzDecodeV2 holds the hand-written decoder to encoding/json: on every
// input both decoders (copying and aliasing) make the same decision with
// the same error and return the same frames; what decodes re-encodes to
// a datagram that decodes the same.
func FuzzDecodeV2(f *testing.F) {
	f.Add([]byte("CR2\n{\"t\":\"chat\",\"room\":\"main\",\"id\":1,\"text\":\"hi\"}\n"))
	f.Add([]byte("CR2\n{\"t\":\"hello\",\"name\":\"a\"}\n{\"t\":\"ping\"}"))
	f.Add([]byte("CR2\n\n"))
	f.Add([]byte("L alice"))
	f.Add([]byte("CR2\n{\"T\":\"who\",\"names\":[\"a\",null],\"x\":{\"y\":[1.5e3,true,null]},\"Seq\":-0}\n"))
	f.Add([]byte("CR2\n{\"t\":\"\\ud83d\\ude00\\u2028\\\"\",\"text\":\"\\t\\u0001\"}\n"))
	for _, v := range goldenVectors(f) {
		f.Add([]byte(v.Datagram))
	}
	for _, v := range compactVectors(f) { // revision 2's context lines are frames to this decoder
		f.Add([]byte(v.Datagram))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeAgrees(t, b)
		frames, err := DecodeV2(nil, b)
		if err != nil {
			if len(frames) != 0 {
				t.Fatal("frames returned with an error")
			}
			return
		}
		if len(frames) == 0 || len(frames) > MaxFramesPerDatagram {
			t.Fatalf("%d frames", len(frames))
		}
		ptrs := make([]*Frame, len(frames))
		for i := range frames {
			ptrs[i] = &frames[i]
		}
		again, err := DecodeV2(nil, EncodeV2(ptrs...))
		if err != nil || !reflect.DeepEqual(again, frames) {
			t.Fatalf("re-encode: %v\n%+v\n%+v", err, again, frames)
		}
		if !bytes.HasPrefix(b, []byte(V2Magic)) {
			t.Fatal("decoded without the magic")
		}
	})
}

type goldenVector struct {
	Name     string  `json:"name"`
	Datagram string  `json:"datagram"`
	Frames   []Frame `json:"frames"`
}

func goldenVectors(tb testing.TB) []goldenVector {
	return readVectors[goldenVector](tb, "vectors.json")
}

// readVectors reads the golden vectors in testdata/v2/name.
func readVectors[V any](tb testing.TB, name string) []V {
	raw, err := os.ReadFile("../../testdata/v2/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	var vs []V
	if err := json.Unmarshal(raw, &vs); err != nil {
		tb.Fatal(err)
	}
	return vs
}

// TestGoldenVectorsBothCodecs: every golden datagram decodes (copying and
// in place) as encoding/json decodes it, and every golden frame encodes as
// encoding/json encodes it. (TestV2GoldenVectors checks the bytes.)
func TestGoldenVectorsBothCodecs(t *testing.T) {
	for _, v := range goldenVectors(t) {
		checkDecodeAgrees(t, []byte(v.Datagram))
		for i := range v.Frames {
			checkEncodeAgrees(t, &v.Frames[i])
		}
	}
}

// checkEncodeAgrees fails t unless AppendFrame writes f as encoding/json
// does, and the line decodes back to f.
func checkEncodeAgrees(t *testing.T, f *Frame) {
	t.Helper()
	want := appendFrameReference([]byte("x"), f)
	got := AppendFrame([]byte("x"), f)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendFrame(%#v):\n got %q\nwant %q", f, got, want)
	}
}

func TestAppendFrameAgreesWithEncodingJSON(t *testing.T) {
	odd := "a\"b\\c/d<e>&f\x00\x01\x08\x0c\n\r\t\x1f\x7f é 中 \u2028\u2029 \u202e \xff\xfe end"
	frames := []Frame{
		{},
		{T: FrameChat, Room: RoomMain, Seq: 42, Epoch: "5f3a9c01", From: "alice", ID: 7, Text: "hi"},
		{T: FrameAck, Room: RoomMain, ID: 1<<64 - 1, Seq: 1},
		{T: FrameThrottled, Room: RoomMain, RetryMS: -5, ID: 3},
		{T: FrameMembers, Room: RoomMain, Names: []string{"a", odd, ""}, More: true},
		{T: FrameMembers, Names: []string{}},
		{T: odd, Room: odd, Seq: 1, Epoch: odd, From: odd, Name: odd, ID: 2, Text: odd, Token: odd, Cookie: odd,
			Last: 3, FromSeq: 4, ToSeq: 5, Count: 6, History: true, Code: odd, Reason: odd, RetryMS: 7, Names: []string{odd},
			More: true, Before: 8, Lost: 9, Pad: odd},
		{T: FrameHistoryEnd, Room: RoomMain, Epoch: "5f3a9c01", FromSeq: 239, ToSeq: 251, Count: 13, Before: 252, Lost: 238},
	}
	for i := range frames {
		checkEncodeAgrees(t, &frames[i])
	}
	for c := 0; c < 0x80; c++ {
		checkEncodeAgrees(t, &Frame{T: string(rune(c)), Text: "x" + string([]byte{byte(c)}) + "y"})
	}
}

// FuzzAppendFrame holds the hand-written encoder to encoding/json on
// arbitrary field values, invalid UTF-8 included.
func FuzzAppendFrame(f *testing.F) {
	f.Add("chat", "alice", "hi <all> & \"friends\"\ttab 中文", "", uint64(42), uint64(7), int64(0), false, "a,b")
	f.Add("", "\u2028", "\x00\x7f\xff", "quit", uint64(0), uint64(1<<63), int64(-1), true, "")
	f.Fuzz(func(t *testing.T, typ, from, text, reason string, seq, id uint64, retry int64, flag bool, names string) {
		fr := Frame{T: typ, Room: reason, Seq: seq, Epoch: from, From: from, Name: text, ID: id, Text: text,
			Token: reason, Cookie: typ, Last: id, FromSeq: seq, ToSeq: id, Count: seq, History: flag, Code: typ,
			Reason: reason, RetryMS: retry, More: !flag, Before: id, Lost: seq, Pad: names}
		if names != "" {
			fr.Names = strings.Split(names, ",")
		}
		checkEncodeAgrees(t, &fr)
		// What the relay encodes decodes back to it (the room's backlog
		// relies on it), when every string is valid UTF-8.
		line := AppendFrame(nil, &fr)
		for _, s := range []string{typ, from, text, reason, names} {
			if !utf8.ValidString(s) {
				return
			}
		}
		var back Frame
		if !decodeFrame(string(line[:len(line)-1]), &back) || !reflect.DeepEqual(back, fr) {
			t.Fatalf("%q decodes to %#v, want %#v", line, back, fr)
		}
	})
}
