package flood

import (
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// clock is an injected clock; tests move it by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var (
	srcA = netip.MustParseAddrPort("192.0.2.1:4000")
	srcB = netip.MustParseAddrPort("192.0.2.1:4001") // same IP, other port
	srcC = netip.MustParseAddrPort("[2001:db8::1]:4000")
)

// small returns settings with small numbers that are easy to reason about.
func small() Settings {
	return Settings{
		Enabled:            true,
		DatagramRate:       10,
		DatagramBurst:      5,
		DatagramBlockDrops: 20,
		ChatRate:           2,
		ChatBurst:          3,
		ChatBlockDrops:     10,
		BlockWindow:        10 * time.Second,
		BlockFor:           30 * time.Second,
		LoginRefusals:      3,
		LoginWindow:        time.Minute,
		LoginBanFor:        5 * time.Minute,
	}
}

// count sends n datagrams from src and counts the allowed ones.
func count(l *Limiter, src netip.AddrPort, n int) (allowed int) {
	for range n {
		if l.AllowDatagram(src).Allowed() {
			allowed++
		}
	}
	return allowed
}

func TestDefaults(t *testing.T) {
	s := Settings{Enabled: true}.withDefaults()
	d := DefaultSettings()
	if s.DatagramRate != 50 || s.DatagramBurst != 200 || s.ChatRate != 20 || s.ChatBurst != 50 {
		t.Errorf("defaults = %+v", s)
	}
	if len(s.Exempt) != 2 || s.MaxSources != d.MaxSources {
		t.Errorf("defaults = %+v", s)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("Validate(defaults) = %v", err)
	}
	if err := (Settings{DatagramBurst: -1}).Validate(); err == nil {
		t.Error("Validate accepted a negative burst")
	}
	if err := (Settings{Exempt: []netip.Prefix{{}}}).Validate(); err == nil {
		t.Error("Validate accepted an invalid prefix")
	}
}

func TestBurstThenRate(t *testing.T) {
	c := newClock()
	s := small()
	s.DatagramBlockDrops = -1 // never block
	l := New(s, c.now)
	if got := count(l, srcA, 10); got != 5 {
		t.Fatalf("burst: allowed %d of 10, want 5", got)
	}
	if v := l.AllowDatagram(srcA); v.Action != DropRate || v.BlockStart {
		t.Fatalf("over the burst: %+v, want DropRate", v)
	}
	// 10/s: one token per 100 ms.
	for i := range 20 {
		c.advance(100*time.Millisecond + time.Microsecond) // a hair more: float tokens
		if !l.AllowDatagram(srcA).Allowed() {
			t.Fatalf("tick %d: a refilled token was refused", i)
		}
		if l.AllowDatagram(srcA).Allowed() {
			t.Fatalf("tick %d: a second datagram in 100 ms was allowed", i)
		}
	}
	// After a second of silence, 10 tokens would accrue, capped at the burst.
	c.advance(time.Second)
	if got := count(l, srcA, 10); got != 5 {
		t.Errorf("after idle: allowed %d, want the burst 5", got)
	}
}

func TestKeysAreIndependent(t *testing.T) {
	c := newClock()
	l := New(small(), c.now)
	count(l, srcA, 100)
	for _, src := range []netip.AddrPort{srcB, srcC} {
		if got := count(l, src, 5); got != 5 {
			t.Errorf("%v: allowed %d of its own burst 5 after %v flooded", src, got, srcA)
		}
	}
	// An IPv4-mapped address is the same source as the plain IPv4 one.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(srcB.Addr().As16()), srcB.Port())
	if l.AllowDatagram(mapped).Allowed() {
		t.Errorf("%v was not treated as %v", mapped, srcB)
	}
	// Sessions are independent of sources and of each other.
	for _, s := range []string{"alice", "bob"} {
		for i := range 3 {
			if !l.AllowChat(s).Allowed() {
				t.Fatalf("chat %s #%d refused within its burst", s, i)
			}
		}
		if l.AllowChat(s).Allowed() {
			t.Errorf("chat %s over its burst allowed", s)
		}
	}
}

func TestBlockAfterAbuseAndExpiry(t *testing.T) {
	c := newClock()
	l := New(small(), c.now)
	count(l, srcA, 5) // the burst
	// DatagramBlockDrops is 20: drops 1..20 are rate drops, drop 21 starts
	// the block and is the only one reported as its start.
	for i := 1; i <= 20; i++ {
		if v := l.AllowDatagram(srcA); v != (Verdict{Action: DropRate}) {
			t.Fatalf("drop %d = %+v, want DropRate", i, v)
		}
	}
	if v := l.AllowDatagram(srcA); v != (Verdict{Action: DropBlocked, BlockStart: true}) {
		t.Fatalf("drop 21 = %+v, want the start of a block", v)
	}
	starts := 0
	for range 1000 {
		c.advance(10 * time.Millisecond) // 10 s in all: tokens accrue, the block holds
		v := l.AllowDatagram(srcA)
		if v.Action != DropBlocked {
			t.Fatalf("during the block: %+v", v)
		}
		if v.BlockStart {
			starts++
		}
	}
	if starts != 0 {
		t.Errorf("block start reported %d more times", starts)
	}
	// Another port of the same IP is not blocked.
	if !l.AllowDatagram(srcB).Allowed() {
		t.Error("the block spread to another port of the same IP")
	}
	c.advance(20 * time.Second) // 30 s after the start
	if v := l.AllowDatagram(srcA); !v.Allowed() {
		t.Fatalf("after the block: %+v", v)
	}
	// Drops counted before the block do not count again: a few rate drops
	// do not restart it.
	count(l, srcA, 10)
	if v := l.AllowDatagram(srcA); v.Action != DropRate {
		t.Errorf("after the block, a few drops: %+v, want DropRate", v)
	}
}

func TestDropsOutsideWindowDoNotBlock(t *testing.T) {
	c := newClock()
	l := New(small(), c.now)
	// 15 drops, then 11 s later 15 more: never more than 20 within 10 s.
	for range 3 {
		count(l, srcA, 5+15)
		c.advance(11 * time.Second)
	}
	for range 20 {
		if v := l.AllowDatagram(srcA); v.Action == DropBlocked {
			t.Fatalf("blocked although drops were spread out: %+v", v)
		}
	}
}

func TestChatBlock(t *testing.T) {
	c := newClock()
	l := New(small(), c.now)
	var starts int
	for range 3 + 10 + 5 { // burst, 10 rate drops, then blocked
		if l.AllowChat("spammer").BlockStart {
			starts++
		}
	}
	if starts != 1 {
		t.Errorf("block starts = %d, want 1", starts)
	}
	if !l.AllowChat("quiet").Allowed() {
		t.Error("another session was blocked")
	}
	l.ForgetSession("spammer")
	if !l.AllowChat("spammer").Allowed() {
		t.Error("a forgotten session is still blocked")
	}
}

func TestLoginBan(t *testing.T) {
	c := newClock()
	l := New(small(), c.now)
	ip := netip.MustParseAddr("198.51.100.7")
	other := netip.MustParseAddr("198.51.100.8")
	if l.LoginRefused(ip) || l.LoginRefused(ip) {
		t.Fatal("banned before 3 refusals")
	}
	if l.LoginBanned(ip) {
		t.Fatal("banned after 2 refusals")
	}
	if !l.LoginRefused(ip) {
		t.Fatal("the 3rd refusal did not start a ban")
	}
	if !l.LoginBanned(ip) {
		t.Fatal("not banned after 3 refusals")
	}
	if l.LoginRefused(ip) {
		t.Error("a refusal during the ban reported a new ban")
	}
	if l.LoginBanned(other) {
		t.Error("the ban spread to another IP")
	}
	// An IPv4-mapped form is the same IP.
	if !l.LoginBanned(netip.AddrFrom16(ip.As16())) {
		t.Error("the IPv4-mapped form is not banned")
	}
	c.advance(5*time.Minute - time.Second)
	if !l.LoginBanned(ip) {
		t.Error("the ban ended early")
	}
	c.advance(time.Second)
	if l.LoginBanned(ip) {
		t.Error("the ban did not end")
	}

	// Refusals spread over more than the window do not ban.
	for range 5 {
		l.LoginRefused(other)
		l.LoginRefused(other)
		c.advance(61 * time.Second)
	}
	if l.LoginBanned(other) {
		t.Error("refusals outside the window banned")
	}

	// IPv6 counts per /64.
	a := netip.MustParseAddr("2001:db8:1:2::1")
	b := netip.MustParseAddr("2001:db8:1:2::2")
	d := netip.MustParseAddr("2001:db8:1:3::1")
	l.LoginRefused(a)
	l.LoginRefused(b)
	l.LoginRefused(a)
	if !l.LoginBanned(b) {
		t.Error("IPv6: refusals from one /64 did not ban it")
	}
	if l.LoginBanned(d) {
		t.Error("IPv6: the ban spread to another /64")
	}
}

func TestLoginExempt(t *testing.T) {
	c := newClock()
	s := small()
	l := New(s, c.now)
	for _, ip := range []string{"127.0.0.1", "127.1.2.3", "::1"} {
		a := netip.MustParseAddr(ip)
		for range 10 {
			if l.LoginRefused(a) {
				t.Errorf("%s: a ban started on an exempt address", ip)
			}
		}
		if l.LoginBanned(a) {
			t.Errorf("%s: exempt address banned", ip)
		}
	}
	if n := l.Stats().LoginIPs; n != 0 {
		t.Errorf("exempt addresses took %d entries", n)
	}

	// A configured NAT prefix; and loopback no longer exempt.
	s.Exempt = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	l.SetSettings(s)
	nat := netip.MustParseAddr("203.0.113.9")
	lo := netip.MustParseAddr("127.0.0.1")
	for range 10 {
		l.LoginRefused(nat)
		l.LoginRefused(lo)
	}
	if l.LoginBanned(nat) {
		t.Error("an exempt NAT was banned")
	}
	if !l.LoginBanned(lo) {
		t.Error("loopback is still exempt with Exempt set")
	}
}

// Exempt answers from the settings whether or not flood control is on:
// the relay's lockdown admits the same prefixes.
func TestExempt(t *testing.T) {
	l := New(Settings{Enabled: false, Exempt: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}, nil)
	for ip, want := range map[string]bool{
		"203.0.113.9": true, "::ffff:203.0.113.9": true, "203.0.114.1": false, "127.0.0.1": false,
	} {
		if got := l.Exempt(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Exempt(%s) = %v, want %v", ip, got, want)
		}
	}
	if l.Exempt(netip.Addr{}) {
		t.Error("the zero address is exempt")
	}
	if !New(Settings{}, nil).Exempt(netip.MustParseAddr("::1")) {
		t.Error("loopback is not exempt by default")
	}
}

func TestDisabled(t *testing.T) {
	c := newClock()
	s := small()
	s.Enabled = false
	l := New(s, c.now)
	ip := netip.MustParseAddr("198.51.100.7")
	for i := range 10000 {
		if !l.AllowDatagram(srcA).Allowed() || !l.AllowChat("x").Allowed() {
			t.Fatalf("disabled limiter dropped at %d", i)
		}
		if l.LoginRefused(ip) {
			t.Fatal("disabled limiter banned")
		}
	}
	if l.LoginBanned(ip) {
		t.Error("disabled limiter banned")
	}
	if st := l.Stats(); st.Sources+st.Sessions+st.LoginIPs != 0 {
		t.Errorf("disabled limiter kept state: %+v", st)
	}
}

func TestSetSettings(t *testing.T) {
	c := newClock()
	s := small()
	s.DatagramBlockDrops = -1 // never block
	l := New(s, c.now)
	count(l, srcA, 5)
	if l.AllowDatagram(srcA).Allowed() {
		t.Fatal("allowed beyond the burst")
	}

	// A larger burst and rate apply to the existing key from its next
	// check on; the time before it accrued tokens at the old rate.
	s.DatagramRate, s.DatagramBurst = 1000, 100
	l.SetSettings(s)
	c.advance(time.Second)
	if got := count(l, srcA, 200); got != 5 {
		t.Errorf("first check after the swap: allowed %d, want the old burst 5", got)
	}
	c.advance(time.Second)
	if got := count(l, srcA, 200); got != 100 {
		t.Errorf("after raising the burst: allowed %d, want 100", got)
	}

	// Rate Inf lets everything through.
	s.DatagramRate = rate.Inf
	l.SetSettings(s)
	if got := count(l, srcA, 1000); got != 1000 {
		t.Errorf("rate Inf: allowed %d of 1000", got)
	}

	// Disabling and re-enabling.
	s.DatagramRate, s.DatagramBurst = 10, 5
	s.Enabled = false
	l.SetSettings(s)
	if got := count(l, srcA, 100); got != 100 {
		t.Errorf("disabled: allowed %d of 100", got)
	}
	s.Enabled = true
	l.SetSettings(s)
	c.advance(time.Second)
	if got := count(l, srcA, 100); got != 5 {
		t.Errorf("re-enabled: allowed %d, want 5", got)
	}
	if got := l.Settings(); got.DatagramBurst != 5 || !got.Enabled {
		t.Errorf("Settings() = %+v", got)
	}
}

// spoofed returns the i-th of many distinct sources.
func spoofed(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(1024+i%50000))
}

func TestBoundUnderSpoofedFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000,000 sources")
	}
	c := newClock()
	s := DefaultSettings()
	s.MaxSources = 4096
	l := New(s, c.now)

	// Members that were there before the flood.
	members := []netip.AddrPort{srcA, srcB, srcC}
	for _, m := range members {
		l.AllowDatagram(m)
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	const n = 1_000_000
	maxLen := 0
	for i := range n {
		if i%1000 == 0 {
			c.advance(time.Millisecond) // 1M datagrams/s
			maxLen = max(maxLen, l.Stats().Sources)
		}
		if i%50_000 == 0 { // each member sends 20/s
			for _, m := range members {
				if !l.AllowDatagram(m).Allowed() {
					t.Fatalf("member %v dropped during the flood at %d", m, i)
				}
			}
		}
		l.AllowDatagram(spoofed(i))
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	st := l.Stats()
	t.Logf("after %d spoofed sources: %+v, max table %d, heap %+d KiB", n, st, maxLen, (int64(after.HeapAlloc)-int64(before.HeapAlloc))/1024)
	if maxLen > s.MaxSources || st.Sources > s.MaxSources {
		t.Errorf("table grew to %d (now %d), cap %d", maxLen, st.Sources, s.MaxSources)
	}
	if st.Overflow == 0 {
		t.Error("the flood never used the overflow bucket")
	}
	// 4096 entries of ~200 bytes plus the map: far below 10 MiB, whereas
	// one entry per source would be ~200 MiB.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 10<<20 {
		t.Errorf("heap grew by %d MiB", grew>>20)
	}
	// The flood ends: a sweep empties the table, keeping nothing blocked.
	c.advance(2 * sweepEvery)
	l.AllowDatagram(srcA)
	if got := l.Stats().Sources; got > len(members) {
		t.Errorf("after the sweep %d entries remain", got)
	}
}

// TestOverflowShared: with the table full of busy keys, new keys share the
// overflow bucket and are never blocked.
func TestOverflowShared(t *testing.T) {
	c := newClock()
	s := small()
	s.MaxSources = 2
	s.OverflowRate, s.OverflowBurst = 1, 3
	l := New(s, c.now)
	count(l, srcA, 5) // busy: its bucket is not full, so it cannot be evicted
	count(l, srcB, 5)
	allowed := 0
	for i := range 100 {
		v := l.AllowDatagram(spoofed(i))
		if v.Action == DropBlocked {
			t.Fatalf("overflow key blocked: %+v", v)
		}
		if v.Allowed() {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("overflow allowed %d, want its burst 3", allowed)
	}
	if st := l.Stats(); st.Sources != 2 || st.Overflow != 100 {
		t.Errorf("stats = %+v", st)
	}
	// A and B, seen more than once, keep their places for IdleAfter.
	c.advance(time.Second)
	over := l.Stats().Overflow
	l.AllowDatagram(srcC)
	if st := l.Stats(); st.Overflow != over+1 || st.Sources != 2 {
		t.Errorf("a new key took the place of a recent member: %+v", st)
	}
	// Once they are idle, new keys evict them.
	c.advance(s.withDefaults().IdleAfter)
	if !l.AllowDatagram(srcC).Allowed() || l.Stats().Overflow != over+1 {
		t.Error("a new key could not take an idle entry's place")
	}
}

func TestLoginTableBound(t *testing.T) {
	c := newClock()
	s := small()
	s.MaxLoginIPs = 100
	l := New(s, c.now)
	for i := range 10000 {
		l.LoginRefused(spoofed(i).Addr())
	}
	if st := l.Stats(); st.LoginIPs > 100 || st.LoginUntracked == 0 {
		t.Errorf("stats = %+v", st)
	}
	// After the window, old entries make room again.
	c.advance(2 * time.Minute)
	ip := netip.MustParseAddr("198.51.100.1")
	for range 3 {
		l.LoginRefused(ip)
	}
	if !l.LoginBanned(ip) {
		t.Error("no ban once the table had room again")
	}
}

func TestConcurrentUse(t *testing.T) {
	l := New(DefaultSettings(), nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				l.AllowDatagram(spoofed(i % 100))
				l.AllowChat("s" + string(rune('a'+g)))
				l.LoginRefused(spoofed(i).Addr())
				l.LoginBanned(spoofed(i).Addr())
				if i%500 == 0 {
					l.SetSettings(DefaultSettings())
				}
			}
		})
	}
	wg.Wait()
}

func TestAllowDatagramDoesNotAllocate(t *testing.T) {
	l := New(DefaultSettings(), nil)
	l.AllowDatagram(srcA)
	l.AllowChat("alice")
	if n := testing.AllocsPerRun(1000, func() { l.AllowDatagram(srcA) }); n != 0 {
		t.Errorf("AllowDatagram: %v allocs per known key", n)
	}
	if n := testing.AllocsPerRun(1000, func() { l.AllowChat("alice") }); n != 0 {
		t.Errorf("AllowChat: %v allocs per known session", n)
	}
}

func BenchmarkAllowDatagram(b *testing.B) {
	s := DefaultSettings()
	s.DatagramRate = rate.Limit(1e12) // always allowed: measure the full path
	l := New(s, nil)
	l.AllowDatagram(srcA)
	b.ReportAllocs()
	for b.Loop() {
		l.AllowDatagram(srcA)
	}
}

func BenchmarkAllowDatagramDropped(b *testing.B) {
	l := New(DefaultSettings(), nil)
	s := l.Settings()
	s.DatagramBlockDrops = -1
	l.SetSettings(s)
	b.ReportAllocs()
	for b.Loop() {
		l.AllowDatagram(srcA)
	}
}

func BenchmarkAllowDatagramSpoofed(b *testing.B) {
	l := New(DefaultSettings(), nil)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.AllowDatagram(spoofed(i))
		i++
	}
}

func BenchmarkAllowChat(b *testing.B) {
	s := DefaultSettings()
	s.ChatRate = rate.Limit(1e12)
	l := New(s, nil)
	b.ReportAllocs()
	for b.Loop() {
		l.AllowChat("alice")
	}
}

// BenchmarkAllowDatagramWhileChatting: the reader's checks while workers
// check chats on the other table; the tables' mutexes are separate, so the
// reader does not wait for them.
func BenchmarkAllowDatagramWhileChatting(b *testing.B) {
	s := DefaultSettings()
	s.DatagramRate, s.ChatRate = rate.Limit(1e12), rate.Limit(1e12)
	l := New(s, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				l.AllowChat("alice")
			}
		}
	})
	b.ReportAllocs()
	for b.Loop() {
		l.AllowDatagram(srcA)
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
}
