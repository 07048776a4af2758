package wire

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestV2GoldenVectors checks testdata/v2/vectors.json both ways: each
// datagram decodes to its frames, and the frames encode to the datagram,
// byte for byte.
func TestV2GoldenVectors(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/v2/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []struct {
		Name     string  `json:"name"`
		Datagram string  `json:"datagram"`
		Frames   []Frame `json:"frames"`
	}
	if err := json.Unmarshal(raw, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors) < 15 {
		t.Fatalf("only %d vectors", len(vectors))
	}
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			got, err := DecodeV2(nil, []byte(v.Datagram))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, v.Frames) {
				t.Fatalf("decode:\n got %+v\nwant %+v", got, v.Frames)
			}
			ptrs := make([]*Frame, len(v.Frames))
			for i := range v.Frames {
				ptrs[i] = &v.Frames[i]
			}
			if enc := EncodeV2(ptrs...); string(enc) != v.Datagram {
				t.Fatalf("encode:\n got %q\nwant %q", enc, v.Datagram)
			}
			if _, err := ParseClassic([]byte(v.Datagram)); err == nil {
				t.Fatal("a v2 datagram parsed as a classic request")
			}
		})
	}
}

func TestClassicNeverV2(t *testing.T) {
	for _, s := range []string{"L alice", "C alice CR2", "Q bob", "C CR2\n{}", "L CR2\n"} {
		if IsV2([]byte(s)) {
			t.Errorf("%q taken for v2", s)
		}
		if _, err := DecodeV2(nil, []byte(s)); err == nil {
			t.Errorf("%q decoded as v2", s)
		}
	}
}

func TestDecodeV2Rejects(t *testing.T) {
	tests := []struct {
		in  string
		err error
	}{
		{"CR2\n", ErrV2NoFrames},
		{"CR2\n\n  \n", ErrV2NoFrames},
		{"CR2\n[1,2]\n", ErrV2BadFrame},
		{"CR2\n{\"room\":\"main\"}\n", ErrV2BadFrame},
		{"CR2\n{\"t\":\"chat\"\n", ErrV2BadFrame},
		{"CR2\n{\"t\":\"chat\"}\nnot json\n", ErrV2BadFrame},
		{"CR2\n{\"t\":\"chat\",\"seq\":-1}\n", ErrV2BadFrame},
		{"CR2\n{\"t\":\"x\",\"text\":\"\xff\"}\n", ErrBadUTF8},
		{"CR2\n" + strings.Repeat("{\"t\":\"ping\"}\n", MaxFramesPerDatagram+1), ErrV2TooManyFrames},
	}
	for _, tt := range tests {
		got, err := DecodeV2(nil, []byte(tt.in))
		if err != tt.err || len(got) != 0 {
			t.Errorf("DecodeV2(%q) = %v, %v; want no frames, %v", tt.in, got, err, tt.err)
		}
	}
	// Unknown fields and types are accepted (forward compatibility); the
	// last newline is optional.
	got, err := DecodeV2(nil, []byte("CR2\n{\"t\":\"future\",\"x\":[1]}\r\n{\"t\":\"ping\",\"last\":3}"))
	if err != nil || len(got) != 2 || got[0].T != "future" || got[1].Last != 3 {
		t.Fatalf("got %+v, %v", got, err)
	}
}
