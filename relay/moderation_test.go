package relay

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// modClock is a clock that moves only when told.
type modClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *modClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *modClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func newModClock() *modClock { return &modClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)} }

func mustTarget(t *testing.T, raw string) banEntry {
	t.Helper()
	b, err := parseBanTarget(raw)
	if err != nil {
		t.Fatalf("parseBanTarget(%q): %v", raw, err)
	}
	return b
}

func nameKey(t *testing.T, name string) string {
	t.Helper()
	_, key, err := wire.CanonicalName(name)
	if err != nil {
		t.Fatalf("CanonicalName(%q): %v", name, err)
	}
	return key
}

func TestBanExpiresWithTheClock(t *testing.T) {
	clock := newModClock()
	m := newModeration(clock.Now)
	b := mustTarget(t, "alice")
	b.reason, b.expires = "spam", clock.Now().Add(time.Hour)
	m.ban(b)
	perm := mustTarget(t, "bob")
	m.ban(perm)

	if got, hit := m.banned(nameKey(t, "alice"), netip.Addr{}, clock.Now()); !hit || got.reason != "spam" {
		t.Fatalf("alice not banned before expiry: %+v %v", got, hit)
	}
	clock.Advance(59*time.Minute + 59*time.Second)
	if _, hit := m.banned(nameKey(t, "alice"), netip.Addr{}, clock.Now()); !hit {
		t.Fatal("alice's ban ended a second early")
	}
	clock.Advance(time.Second)
	if _, hit := m.banned(nameKey(t, "alice"), netip.Addr{}, clock.Now()); hit {
		t.Fatal("alice still banned at expiry")
	}
	// The expired ban is gone from the listing; the permanent one stays.
	list := m.bans()
	if len(list) != 1 || list[0].target != "bob" || m.nbans.Load() != 1 {
		t.Fatalf("bans after expiry: %+v (count %d)", list, m.nbans.Load())
	}
	clock.Advance(100 * 24 * time.Hour)
	if _, hit := m.banned(nameKey(t, "bob"), netip.Addr{}, clock.Now()); !hit {
		t.Fatal("a ban without --for ended")
	}
}

func TestBanNamesAreCaseAndWidthInsensitive(t *testing.T) {
	m := newModeration(newModClock().Now)
	m.ban(mustTarget(t, "Alice"))
	now := m.now()
	for _, variant := range []string{"alice", "ALICE", "Ａｌｉｃｅ"} {
		if _, hit := m.banned(nameKey(t, variant), netip.Addr{}, now); !hit {
			t.Errorf("%q is not banned by a ban of Alice", variant)
		}
	}
	if _, hit := m.banned(nameKey(t, "alicia"), netip.Addr{}, now); hit {
		t.Error("alicia is banned by a ban of Alice")
	}
	if _, err := m.unban(mustTarget(t, "ＡＬＩＣＥ")); err != nil {
		t.Fatalf("unban by a width variant: %v", err)
	}
	if _, err := m.unban(mustTarget(t, "alice")); err != ErrNoBan {
		t.Fatalf("second unban: %v, want ErrNoBan", err)
	}
}

func TestBanAddresses(t *testing.T) {
	m := newModeration(newModClock().Now)
	for _, target := range []string{"10.0.0.0/8", "::ffff:192.168.1.7", "2001:db8::/32", "::ffff:172.16.0.0/108", "fe80::1"} {
		m.ban(mustTarget(t, target))
	}
	narrow := mustTarget(t, "10.1.0.0/16")
	narrow.reason = "narrow"
	m.ban(narrow)
	now := m.now()
	tests := []struct {
		ip     string
		banned bool
		target string
	}{
		{"10.200.3.4", true, "10.0.0.0/8"},
		{"::ffff:10.200.3.4", true, "10.0.0.0/8"}, // IPv4-mapped is IPv4
		{"10.1.2.3", true, "10.1.0.0/16"},         // the narrowest prefix answers
		{"11.0.0.1", false, ""},
		{"192.168.1.7", true, "192.168.1.7"}, // a mapped IP ban is an IPv4 /32
		{"::ffff:192.168.1.7", true, "192.168.1.7"},
		{"192.168.1.8", false, ""},
		{"172.16.9.9", true, "172.16.0.0/12"}, // a mapped prefix is an IPv4 prefix
		{"2001:db8:1::5", true, "2001:db8::/32"},
		{"2001:db9::5", false, ""},
		{"fe80::1%eth0", true, "fe80::1"}, // a zone does not escape a ban
		{"::1", false, ""},
	}
	for _, tt := range tests {
		b, hit := m.banned("", netip.MustParseAddr(tt.ip), now)
		if hit != tt.banned || b.target != tt.target {
			t.Errorf("%s: banned %v by %q, want %v by %q", tt.ip, hit, b.target, tt.banned, tt.target)
		}
	}
	if b := mustTarget(t, "::ffff:192.168.1.7"); b.kind != BanIP || b.prefix.Bits() != 32 {
		t.Errorf("mapped IP ban: %+v, want an IPv4 /32", b)
	}
	if b := mustTarget(t, "2001:db8::1"); b.kind != BanIP || b.prefix.Bits() != 128 {
		t.Errorf("IPv6 ban: %+v, want a /128", b)
	}
	if b := mustTarget(t, "10.1.2.3/8"); b.target != "10.0.0.0/8" || b.kind != BanCIDR {
		t.Errorf("unmasked prefix: %+v, want 10.0.0.0/8", b)
	}
	if b := mustTarget(t, "10.1.2.3/32"); b.kind != BanIP {
		t.Errorf("a /32 prefix: %+v, want an IP ban", b)
	}
	for _, bad := range []string{"10.0.0.0/33", "a/b", "::g", "admin", "two words", ""} {
		if b, err := parseBanTarget(bad); err == nil {
			t.Errorf("parseBanTarget(%q) = %+v, want an error", bad, b)
		}
	}
}

func TestMutes(t *testing.T) {
	clock := newModClock()
	m := newModeration(clock.Now)
	alice, bob := nameKey(t, "alice"), nameKey(t, "bob")
	now := clock.Now()
	if _, hit := m.mutedIn(alice, "dev", now); hit {
		t.Fatal("muted with no mutes")
	}
	m.mute(muteEntry{name: "alice", nameKey: alice, room: "Dev", roomKey: "dev", expires: now.Add(10 * time.Minute)})
	m.mute(muteEntry{name: "bob", nameKey: bob})
	for _, tt := range []struct {
		key, room string
		muted     bool
	}{
		{alice, "dev", true},
		{alice, "other", false},
		{alice, "", false}, // relay-wide only
		{bob, "", true},
		{bob, "anything", true}, // a relay-wide mute holds in every room
		{nameKey(t, "BOB"), "dev", true},
	} {
		if _, hit := m.mutedIn(tt.key, tt.room, now); hit != tt.muted {
			t.Errorf("mutedIn(%q, %q) = %v, want %v", tt.key, tt.room, hit, tt.muted)
		}
	}
	clock.Advance(10 * time.Minute)
	if _, hit := m.mutedIn(alice, "dev", clock.Now()); hit {
		t.Error("alice still muted at expiry")
	}
	if list := m.muteList(); len(list) != 1 || list[0].name != "bob" {
		t.Errorf("mutes after expiry: %+v", list)
	}
	if _, err := m.unmute(bob, "dev"); err != ErrNoMute {
		t.Errorf("unmute in a room bob is not muted in: %v", err)
	}
	if _, err := m.unmute(bob, ""); err != nil {
		t.Errorf("unmute bob: %v", err)
	}
	if m.nmutes.Load() != 0 {
		t.Errorf("%d mutes counted after the last unmute", m.nmutes.Load())
	}
}

func TestParseModDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90s": 90 * time.Second, "30m": 30 * time.Minute, "12h": 12 * time.Hour,
		"7d": 7 * 24 * time.Hour, "1d12h": 36 * time.Hour, "0d1s": time.Second,
	} {
		if got, err := parseModDuration(in); err != nil || got != want {
			t.Errorf("parseModDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0s", "-1h", "d", "7", "7x", "1.5d", "36501d", "-1d", "1d-2h", "1dd"} {
		if got, err := parseModDuration(bad); err == nil {
			t.Errorf("parseModDuration(%q) = %v, want an error", bad, got)
		}
	}
}

func TestModWordings(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	en, zh := modWordings[wire.LangEN], modWordings[wire.LangZH]
	for d, want := range map[time.Duration]string{
		45 * time.Second:                    "45s",
		59*time.Minute + 59*time.Second:     "59m59s",
		time.Hour:                           "1h",
		2*time.Hour + 59*time.Minute + 30e9: "2h59m", // seconds beyond the two units are dropped
		7 * 24 * time.Hour:                  "7d",
		6*24*time.Hour + 23*time.Hour:       "6d23h",
		1500 * time.Millisecond:             "2s", // rounded up: never "0s" while something is left
	} {
		if got := en.duration(d); got != want {
			t.Errorf("duration(%v) = %q, want %q", d, got, want)
		}
	}
	if got := zh.duration(6*24*time.Hour + 23*time.Hour); got != "6天23小时" {
		t.Errorf("zh duration = %q", got)
	}
	b := banEntry{reason: "spam", expires: now.Add(time.Hour)}
	if got := en.bannedReason(b, now); got != "you are banned: spam (1h left)" {
		t.Errorf("en refusal %q", got)
	}
	if got := zh.bannedReason(b, now); got != "你已被封禁: spam (剩余 1小时)" {
		t.Errorf("zh refusal %q", got)
	}
	if got := en.bannedReason(banEntry{}, now); got != "you are banned" {
		t.Errorf("en refusal without reason or end %q", got)
	}
	// Every refusal fits a classic client's login reply, however long the
	// ban's reason, and is never cut inside a character.
	for lang, w := range modWordings {
		for _, reason := range []string{strings.Repeat("x", 300), strings.Repeat("长", 100)} {
			long := banEntry{reason: reason, expires: now.Add(6*24*time.Hour + 23*time.Hour)}
			got := w.bannedReason(long, now)
			if len(got) > wire.MaxReasonBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, w.leftPart(long.expires, now)) {
				t.Errorf("%s: refusal %q (%d bytes)", lang, got, len(got))
			}
		}
		for _, r := range []string{w.banned, w.lockdownRefusal, w.muted} {
			if len(r) > wire.MaxReasonBytes || r == wire.ReplyOK {
				t.Errorf("%s: reason %q too long", lang, r)
			}
		}
	}
	if _, ok := modWordings[wire.LangZH]; !ok || len(modWordings) != len(wordings) {
		t.Error("moderation wording missing for a language")
	}
}

// A Server answers admit and mutedIn as the core will ask them, before it
// serves (both only read moderation and flood state).
func TestAdmitAndMutedIn(t *testing.T) {
	clock := newModClock()
	s, err := New(Config{
		Now:   clock.Now,
		Flood: &FloodSettings{Enabled: false, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	local, other := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	if code, reason, ok := s.admit(nameKey(t, "alice"), other, clock.Now()); !ok {
		t.Fatalf("refused with nothing set: %s %q", code, reason)
	}
	b := mustTarget(t, "127.0.0.0/30")
	b.reason = "lab"
	s.mod().ban(b)
	code, reason, ok := s.admit(nameKey(t, "alice"), netip.MustParseAddr("::ffff:127.0.0.2"), clock.Now())
	if ok || code != LoginBanned || reason != "you are banned: lab" {
		t.Fatalf("banned address: %q %q %v", code, reason, ok)
	}
	s.mod().unban(b)

	s.mod().setLockdown(true)
	if code, reason, ok := s.admit(nameKey(t, "alice"), other, clock.Now()); ok || code != LoginLockdown || reason != "the relay is in lockdown: no new logins" {
		t.Fatalf("lockdown, not exempt: %q %q %v", code, reason, ok)
	}
	if _, _, ok := s.admit(nameKey(t, "alice"), local, clock.Now()); !ok {
		t.Fatal("lockdown refused an exempt address")
	}
	// A ban outranks the exemption: the operator named this name.
	s.mod().ban(mustTarget(t, "alice"))
	if code, _, ok := s.admit(nameKey(t, "alice"), local, clock.Now()); ok || code != LoginBanned {
		t.Fatalf("banned name from an exempt address: %q %v", code, ok)
	}

	m := &Member{Name: "Bob", Key: nameKey(t, "Bob")}
	s.mod().mute(muteEntry{name: "Bob", nameKey: m.Key, room: "Dev", roomKey: "dev", expires: clock.Now().Add(90 * time.Second)})
	if reason, muted := s.mutedIn(m, "dev", clock.Now()); !muted || reason != "message not sent: you are muted in Dev (1m30s left)" {
		t.Fatalf("mutedIn dev: %q %v", reason, muted)
	}
	if _, muted := s.mutedIn(m, "", clock.Now()); muted {
		t.Fatal("a room mute holds relay-wide")
	}
}
