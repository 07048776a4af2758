package relay

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chatrelay/chatrelay/relay/wire"
)

func TestWordingsFitClassicClients(t *testing.T) {
	for lang, w := range wordings {
		for _, reason := range []string{w.reasonInvalid, w.reasonReserved, w.reasonTaken, w.reasonFull, w.reasonOtherName, w.refusedControl} {
			if len(reason) > wire.MaxReasonBytes || reason == wire.ReplyOK || !utf8.ValidString(reason) {
				t.Errorf("%s: reason %q (%d bytes) must be valid UTF-8, at most %d bytes and not OK", lang, reason, len(reason), wire.MaxReasonBytes)
			}
		}
		long := strings.Repeat("长", 2000) // 6000 bytes
		line := classicLine(w.Admin, long)
		if len(line) > wire.MaxClassicReply || !utf8.Valid(line) {
			t.Errorf("%s: admin line %d bytes, valid=%v", lang, len(line), utf8.Valid(line))
		}
	}
	if wordings[wire.LangEN].reasonFull != "full" {
		t.Error(`the English refusal for a full room must be "full"`)
	}
}

func TestParseAdmin(t *testing.T) {
	tests := []struct {
		line, cmd, args string
		ok              bool
	}{
		{"who", "who", "", true},
		{"  stats", "stats", "", true},
		{"notice hello  world", "notice", "hello  world", true},
		{"kick bob spamming links", "kick", "bob spamming links", true},
		{"notice", "", "", false},
		{"notice   ", "", "", false},
		{"kick", "", "", false},
		{"dance", "", "", false},
		{"WHO", "", "", false},
		{"who\xff", "", "", false},
		{"notice " + strings.Repeat("x", MaxAdminLine), "", "", false},
	}
	for _, tt := range tests {
		cmd, args, err := ParseAdmin(tt.line)
		if (err == nil) != tt.ok || cmd != tt.cmd || args != tt.args {
			t.Errorf("ParseAdmin(%.40q) = %q, %q, %v", tt.line, cmd, args, err)
		}
	}
}

func FuzzParseAdmin(f *testing.F) {
	for _, s := range []string{"who", "stats", "notice hi", "kick bob reason", "kick", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, args, err := ParseAdmin(line)
		if err != nil {
			if cmd != "" || args != "" {
				t.Fatal("parts returned with an error")
			}
			return
		}
		c, ok := adminCommands[cmd]
		if !ok || len(strings.Fields(args)) < c.minArgs || !utf8.ValidString(args) {
			t.Fatalf("accepted %q as %q %q", line, cmd, args)
		}
	})
}

func TestICMPStrikes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var st icmpState
	seen := at(0)
	for _, c := range []struct {
		now   int
		spoke bool // the member sent something just before this error
		evict bool
	}{
		{now: 1}, {now: 5}, {now: 9}, // 3 errors in 8 s: not yet
		{now: 12, evict: true}, // 11 s after the first
	} {
		if c.spoke {
			seen = at(c.now)
		}
		if got := st.strike(seen, at(c.now)); got != c.evict {
			t.Fatalf("strike at %ds = %v, want %v", c.now, got, c.evict)
		}
	}
	// Forged errors while the member keeps talking never add up.
	st = icmpState{}
	for s := 0; s < 100; s += 6 {
		seen = at(s)
		if st.strike(seen, at(s+1)) {
			t.Fatalf("evicted at %ds although the member spoke at %ds", s+1, s)
		}
	}
}

// A session with a hole that never closes keeps at most v2MaxAbove ids
// above its floor, forgetting the ones that came first; the memory of the
// order they came in stays bounded too. The relay does this per chat, so it
// must stay cheap (BenchmarkV2RememberWithHole).
func TestV2IDMemoryWithAHoleThatNeverCloses(t *testing.T) {
	v := newV2State()
	const n = 3 * v2MaxAbove
	for id := uint64(2); id <= n; id++ { // id 1 never comes
		v.remember(id, id)
		if seq, dup := v.seen(id); !dup || seq != id {
			t.Fatalf("id %d just broadcast: seq %d dup %v", id, seq, dup)
		}
	}
	if v.floor != 0 || len(v.above) != v2MaxAbove {
		t.Fatalf("floor %d, %d above, want 0 and %d", v.floor, len(v.above), v2MaxAbove)
	}
	if len(v.arrived) > 2*v2MaxAbove+64 {
		t.Fatalf("order memory %d for %d ids above", len(v.arrived), len(v.above))
	}
	// The oldest were forgotten (a late copy would be broadcast again, not
	// lost), the newest are still known.
	if _, dup := v.seen(2); dup {
		t.Fatal("id 2 still remembered: the oldest should be forgotten first")
	}
	if _, dup := v.seen(n - v2MaxAbove + 1); !dup {
		t.Fatal("a recent id forgotten")
	}
	v.remember(1, 1) // the hole closes: the floor folds up what is left
	if v.floor != 1 {
		t.Fatalf("floor %d after the hole closed, want 1 (2.. were forgotten)", v.floor)
	}
}

func BenchmarkV2RememberWithHole(b *testing.B) {
	v := newV2State()
	id := uint64(2) // 1 never comes
	for ; id < 2*v2MaxAbove; id++ {
		v.remember(id, id)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v.remember(id, id)
		id++
	}
}

func TestV2IDMemory(t *testing.T) {
	v := newV2State()
	// Ids arrive out of order, with a hole at 5 that stays open for long.
	for id := uint64(1); id <= 3*v2SeqMemory; id++ {
		if id != 5 {
			v.remember(id, id+100)
		}
	}
	for id := uint64(2*v2SeqMemory + 1); id <= 3*v2SeqMemory; id++ { // the last v2SeqMemory: their seqs kept
		if seq, dup := v.seen(id); !dup || seq != id+100 {
			t.Fatalf("recent id %d: seq %d dup %v", id, seq, dup)
		}
	}
	if _, dup := v.seen(5); dup {
		t.Fatal("the hole, arriving late, taken for a duplicate: it would be lost")
	}
	// Old ids are still known as broadcast, their seq forgotten.
	if seq, dup := v.seen(7); !dup || seq != 0 {
		t.Fatalf("old id: seq %d dup %v", seq, dup)
	}
	v.remember(5, 9999)
	if v.floor != 3*v2SeqMemory || len(v.above) != 0 {
		t.Fatalf("floor %d, %d above", v.floor, len(v.above))
	}
	if _, dup := v.seen(3*v2SeqMemory + 1); dup {
		t.Fatal("a new id taken for a duplicate")
	}
}

// BenchmarkV2ChatIDs is a session's id memory per chat as it usually goes:
// ids in order, each checked for a duplicate and then remembered.
func BenchmarkV2ChatIDs(b *testing.B) {
	v := newV2State()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		id := uint64(i + 1)
		if _, dup := v.seen(id); dup {
			b.Fatal("a new id taken for a duplicate")
		}
		v.remember(id, id)
	}
}
