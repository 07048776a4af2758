package wire

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseClassic(t *testing.T) {
	tests := []struct {
		in   string
		want Request
		err  error
	}{
		{"L alice", Request{Verb: 'L', Name: "alice"}, nil},
		{"L alice\n", Request{Verb: 'L', Name: "alice"}, nil},
		{"L alice\r\n", Request{Verb: 'L', Name: "alice"}, nil},
		{"L alice\n\n", Request{Verb: 'L', Name: "alice\n"}, nil}, // one newline is stripped, not two
		{"L", Request{Verb: 'L'}, nil},
		{"L ", Request{Verb: 'L'}, nil},
		{"C alice hi there", Request{Verb: 'C', Name: "alice", Text: "hi there"}, nil},
		{"C alice  two spaces ", Request{Verb: 'C', Name: "alice", Text: " two spaces "}, nil},
		{"C alice \t", Request{Verb: 'C', Name: "alice", Text: "\t"}, nil},
		{"Q bob", Request{Verb: 'Q', Name: "bob"}, nil},
		{"", Request{}, ErrEmpty},
		{"\r\n", Request{}, ErrEmpty},
		{"\xff", Request{}, ErrBadUTF8},
		{"X a", Request{}, ErrUnknownVerb},
		{"La", Request{}, ErrUnknownVerb},
		{"C", Request{}, ErrMalformed},
		{"C alice", Request{}, ErrMalformed},
		{"C alice ", Request{}, ErrMalformed},
		{"C  text", Request{}, ErrMalformed},
		{"Q", Request{}, ErrMalformed},
	}
	for _, tt := range tests {
		got, err := ParseClassic([]byte(tt.in))
		if err != tt.err || got != tt.want {
			t.Errorf("ParseClassic(%q) = %+v, %v; want %+v, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, r := range []Request{{Verb: 'L', Name: "张三"}, {Verb: 'C', Name: "bob", Text: "hi  there\t!"}, {Verb: 'Q', Name: "Ａｌｉｃｅ"}} {
		var b []byte
		switch r.Verb {
		case 'L':
			b = AppendLogin(nil, r.Name)
		case 'C':
			b = AppendChat(nil, r.Name, r.Text)
		case 'Q':
			b = AppendQuit(nil, r.Name)
		}
		got, err := ParseClassic(b)
		if err != nil || got != r {
			t.Errorf("round trip of %+v: %+v, %v", r, got, err)
		}
	}
}

func TestCanonicalName(t *testing.T) {
	_, alice, err := CanonicalName("alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, variant := range []string{"Alice", "ALICE", "Ａｌｉｃｅ"} {
		if _, k, err := CanonicalName(variant); err != nil || k != alice {
			t.Errorf("%q: key %q, %v; want the key of alice", variant, k, err)
		}
	}
	if d, _, _ := CanonicalName("Ａｌｉｃｅ"); d != "Alice" {
		t.Errorf("full-width display %q, want Alice", d)
	}
	if d, _, _ := CanonicalName("Bob"); d != "Bob" {
		t.Errorf("display %q: case must be kept", d)
	}
	for _, bad := range []string{"", " ", "a b", "a\u00a0b", "tab\tname", "nul\x00", strings.Repeat("x", 33), "\u200b"} {
		if _, _, err := CanonicalName(bad); err != ErrNameInvalid {
			t.Errorf("%q: %v, want ErrNameInvalid", bad, err)
		}
	}
	for _, r := range []string{"管理员", "Admin", "ADMINISTRATOR", "ｓｅｒｖｅｒ", "SyStEm"} {
		if _, _, err := CanonicalName(r); err != ErrNameReserved {
			t.Errorf("%q: %v, want ErrNameReserved", r, err)
		}
	}
}

func TestTruncateUTF8(t *testing.T) {
	s := "ab中文"
	for n := 0; n <= len(s)+1; n++ {
		got := TruncateUTF8(s, n)
		if len(got) > n || !utf8.ValidString(got) || !strings.HasPrefix(s, got) {
			t.Errorf("TruncateUTF8(%q, %d) = %q", s, n, got)
		}
	}
}

func FuzzParseClassic(f *testing.F) {
	for _, s := range []string{"L alice", "C alice hi", "Q alice\r\n", "", "\xff", "C a  b", "L 管理员\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseClassic(b)
		if inPlace, err2 := ParseClassicInPlace(b); inPlace != r || err2 != err {
			t.Fatalf("in place: %+v, %v; copying: %+v, %v", inPlace, err2, r, err)
		}
		if err != nil {
			return
		}
		if !utf8.ValidString(r.Name) || !utf8.ValidString(r.Text) {
			t.Fatalf("invalid UTF-8 in %+v", r)
		}
		if r.Verb == VerbChat && (r.Name == "" || r.Text == "" || strings.Contains(r.Name, " ")) {
			t.Fatalf("chat without name or text: %+v", r)
		}
		// Re-encoding what the relay would accept parses to the same
		// request. (A name or text ending in a newline, such as "Q \n\n",
		// is parsed but never accepted: control characters.)
		if CheckText(r.Name) != nil || CheckText(r.Text) != nil {
			return
		}
		var enc []byte
		switch r.Verb {
		case VerbLogin:
			enc = AppendLogin(nil, r.Name)
		case VerbChat:
			enc = AppendChat(nil, r.Name, r.Text)
		case VerbQuit:
			enc = AppendQuit(nil, r.Name)
		}
		if r2, err := ParseClassic(enc); r.Verb != VerbLogin && (err != nil || r2 != r) {
			t.Fatalf("re-parse of %q: %+v, %v; want %+v", enc, r2, err, r)
		}
	})
}

func FuzzNamesAndText(f *testing.F) {
	for _, s := range []string{"alice", "Ａｌｉｃｅ", "管理员", "a b", "\u202e", "x\x1b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, k, err := CanonicalName(s); err == nil {
			if d == "" || strings.ContainsAny(d, " \t\r\n") || utf8.RuneCountInString(d) > MaxNameRunes {
				t.Fatalf("accepted bad name %q -> %q", s, d)
			}
			if _, k2, err := CanonicalName(d); err != nil || k2 != k {
				t.Fatalf("display form %q of %q is not stable: %v", d, s, err)
			}
		}
		if d, k, err := CanonicalRoom(s); err == nil {
			if d == "" || d[0] == '@' || strings.ContainsAny(d, " \t\r\n") || utf8.RuneCountInString(d) > MaxRoomRunes {
				t.Fatalf("accepted bad room %q -> %q", s, d)
			}
			if _, k2, err := CanonicalRoom(d); err != nil || k2 != k {
				t.Fatalf("display form %q of room %q is not stable: %v", d, s, err)
			}
		}
		if CheckText(s) == nil {
			for _, r := range s {
				if (r < 0x20 && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
					t.Fatalf("CheckText accepted %q", s)
				}
			}
		}
	})
}

// TestParseClassicCopies: ParseClassic's fields survive the buffer's reuse,
// and the in-place parse returns the same request.
func TestParseClassicCopies(t *testing.T) {
	for _, in := range []string{"C alice hi all", "L bob\r\n", "Q carol\n", "C 小红 你好 世界", "L "} {
		b := []byte(in)
		got, err := ParseClassic(b)
		if err != nil {
			t.Fatal(err)
		}
		inPlace, err := ParseClassicInPlace(b)
		if err != nil || inPlace != got {
			t.Fatalf("%q: in place %+v, %v; copying %+v", in, inPlace, err, got)
		}
		want := got
		want.Name, want.Text = strings.Clone(got.Name), strings.Clone(got.Text)
		for i := range b {
			b[i] = 'x'
		}
		if got != want {
			t.Fatalf("%q: the request changed with its buffer: %+v", in, got)
		}
	}
}

func TestCanonicalRoom(t *testing.T) {
	for _, tc := range []struct{ in, display string }{
		{"main", "main"}, {"Dev", "Dev"}, {"Ｄｅｖ", "Dev"}, {"#ops", "#ops"}, {"教室", "教室"},
		{strings.Repeat("r", MaxRoomRunes), strings.Repeat("r", MaxRoomRunes)},
	} {
		d, _, err := CanonicalRoom(tc.in)
		if err != nil || d != tc.display {
			t.Errorf("CanonicalRoom(%q) = %q, %v; want %q", tc.in, d, err, tc.display)
		}
	}
	_, k1, _ := CanonicalRoom("Dev")
	_, k2, _ := CanonicalRoom("ＤＥＶ")
	if k1 != k2 {
		t.Errorf("Dev and ＤＥＶ have keys %q and %q: one room", k1, k2)
	}
	for _, bad := range []string{"", "@", "@alice", "a b", "a\tb", "x\x1b", strings.Repeat("r", MaxRoomRunes+1), "\xff"} {
		if _, _, err := CanonicalRoom(bad); err != ErrRoomInvalid {
			t.Errorf("CanonicalRoom(%q): %v, want ErrRoomInvalid", bad, err)
		}
	}
}
