// Package flood is the relay's flood control: token buckets
// (golang.org/x/time/rate) per source address and per session, temporary
// blocks for keys that keep overrunning them, and a per-IP ban for
// addresses that keep having their logins refused.
//
// # Checks
//
//   - AllowDatagram(src): every datagram, keyed by the sender's IP:port,
//     before any parsing. Default 50/s with a burst of 200.
//   - AllowChat(session): every chat message, keyed by the session. Default
//     20/s with a burst of 50.
//   - A key that has more than DatagramBlockDrops (ChatBlockDrops) rate
//     drops within BlockWindow is
//     blocked for BlockFor: all its datagrams (or chats) are dropped
//     without touching its bucket. Only that IP:port or session is blocked,
//     never its whole IP. The drop that starts a block is reported once
//     (Verdict.BlockStart) so the relay logs a block, not every datagram.
//   - LoginRefused(ip)/LoginBanned(ip): LoginRefusals refused logins from
//     one IP within LoginWindow ban that IP from logging in for LoginBanFor.
//     IPv6 addresses count per /64, the block a single host usually owns.
//     Addresses in Exempt (default 127.0.0.0/8 and ::1/128, as ergo) are
//     never banned: a NAT or a local gateway must not pay for one abuser.
//
// # Defaults and why
//
// People typing send a line every few seconds at most, and a paste arrives
// as a burst of tens of lines; bots and scripts chat steadily. ergo allows
// an IRC client a burst of 5 then 2 messages/s, which is tuned for humans
// only. The chat default (burst 50, then 20/s per session) lets a 50-line
// paste through whole and a busy bot keep talking, while capping what one
// session can make the relay fan out: every chat costs one send per member,
// so a 1,000-member room pays at most 20,000 sends/s for a runaway session.
// The datagram default (burst 200, then 50/s per IP:port) sits well above
// the chat rate because joins, pings, acknowledgements and retransmissions
// share it; it only bounds raw input so that one source cannot monopolise
// the reader. Blocks start after more than 500 datagram drops (100 chat
// drops) within 10 s: a client briefly over its rate loses a few
// datagrams, one that keeps going at several times its rate is blocked for
// 30 s. Ten refused logins in a minute (a user retrying a taken name does a
// few) ban the IP's logins for 5 minutes.
//
// # Concurrency and cost
//
// All methods are safe for concurrent use. Each table (sources, sessions,
// logins) has its own mutex, so the reader goroutine, which is the only
// caller of AllowDatagram, never waits for workers calling AllowChat or
// LoginRefused: its mutex is uncontended and costs ~5 ns, which is why the
// whole Limiter is made safe rather than left to a one-goroutine contract.
// A known key costs a map lookup and a token-bucket update, and allocates
// nothing: ~130 ns on a 2-core EPYC VM, a third of it time.Now (see
// BenchmarkAllowDatagram). Settings sit in an atomic.Pointer
// and can be swapped at any time (SetSettings); each key picks up the new
// rate and burst on its next check.
//
// # Bounded memory
//
// No table grows beyond its cap (MaxSources, MaxSessions, MaxLoginIPs).
// Entries are evicted lazily, with no goroutine: a key whose bucket is
// full again and that is neither blocked nor counting drops behaves exactly
// like a new key, so it can be forgotten at no loss. Keys seen only once
// (what a spoofed-source flood produces) are forgotten as soon as that
// holds; keys seen more than once (members) keep their entry until they
// have been silent for IdleAfter. A new key on a full table evicts idle
// entries from a random sample; if it finds none, the new key shares one
// overflow bucket (OverflowRate, OverflowBurst) with all the other keys
// that did not fit, and nothing is allocated. Once a minute a check sweeps
// the whole table. Under a flood of spoofed sources the known members keep
// their own buckets while the flood shares one. A login
// refusal that cannot be tracked because the table is full is not counted
// (the table fails open rather than banning the wrong IP).
package flood

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Settings configures a Limiter. A zero field means its default (see
// DefaultSettings); Enabled is the exception: false disables all checks.
type Settings struct {
	// Enabled turns flood control on. False (--flood off) allows every
	// datagram and chat and bans nobody.
	Enabled bool

	// DatagramRate is each source IP:port's sustained rate of datagrams per
	// second. Default 50; rate.Inf disables the check.
	DatagramRate rate.Limit
	// DatagramBurst is how many datagrams a source may send at once.
	// Default 200.
	DatagramBurst int
	// DatagramBlockDrops: a source with more rate drops than this within
	// BlockWindow is blocked for BlockFor. Default 500; negative: never.
	DatagramBlockDrops int

	// ChatRate is each session's sustained rate of chat messages per
	// second. Default 20; rate.Inf disables the check.
	ChatRate rate.Limit
	// ChatBurst is how many chat messages a session may send at once.
	// Default 50.
	ChatBurst int
	// ChatBlockDrops: a session with more rate drops than this within
	// BlockWindow is blocked for BlockFor. Default 100; negative: never.
	ChatBlockDrops int

	// BlockWindow is the window in which drops are counted. Default 10 s.
	BlockWindow time.Duration
	// BlockFor is how long a block lasts. Default 30 s.
	BlockFor time.Duration

	// LoginRefusals refused logins from one IP within LoginWindow ban the
	// IP from logging in for LoginBanFor. Default 10; negative: never ban.
	LoginRefusals int
	// LoginWindow is the window in which refusals are counted. Default 1 min.
	LoginWindow time.Duration
	// LoginBanFor is how long a login ban lasts. Default 5 min.
	LoginBanFor time.Duration
	// Exempt lists prefixes that are never banned from logging in. nil
	// means the default, 127.0.0.0/8 and ::1/128; an empty non-nil slice
	// exempts nobody.
	Exempt []netip.Prefix

	// MaxSources bounds the per-source table. Default 65,536.
	MaxSources int
	// MaxSessions bounds the per-session table; keep it above the relay's
	// member limit. Default 16,384.
	MaxSessions int
	// MaxLoginIPs bounds the table of IPs with recent refusals. Default
	// 16,384.
	MaxLoginIPs int
	// IdleAfter is how long a key seen more than once keeps its entry
	// after its last datagram (or chat), even when the table is full. A
	// key seen once can be evicted as soon as its bucket has refilled.
	// Default 10 min.
	IdleAfter time.Duration
	// OverflowRate and OverflowBurst configure the bucket shared by the
	// keys that do not fit in a full table (one for sources, one for
	// sessions). Defaults 1,000/s and 2,000.
	OverflowRate  rate.Limit
	OverflowBurst int
}

// DefaultExempt is the default of Settings.Exempt.
var DefaultExempt = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
}

// DefaultSettings returns the enabled defaults.
func DefaultSettings() Settings {
	return Settings{
		Enabled:            true,
		DatagramRate:       50,
		DatagramBurst:      200,
		DatagramBlockDrops: 500,
		ChatRate:           20,
		ChatBurst:          50,
		ChatBlockDrops:     100,
		BlockWindow:        10 * time.Second,
		BlockFor:           30 * time.Second,
		LoginRefusals:      10,
		LoginWindow:        time.Minute,
		LoginBanFor:        5 * time.Minute,
		Exempt:             DefaultExempt,
		MaxSources:         1 << 16,
		MaxSessions:        1 << 14,
		MaxLoginIPs:        1 << 14,
		IdleAfter:          10 * time.Minute,
		OverflowRate:       1000,
		OverflowBurst:      2000,
	}
}

// withDefaults returns s with every zero field set to its default.
func (s Settings) withDefaults() Settings {
	d := DefaultSettings()
	setIfZero(&s.DatagramRate, d.DatagramRate)
	setIfZero(&s.DatagramBurst, d.DatagramBurst)
	setIfZero(&s.DatagramBlockDrops, d.DatagramBlockDrops)
	setIfZero(&s.ChatRate, d.ChatRate)
	setIfZero(&s.ChatBurst, d.ChatBurst)
	setIfZero(&s.ChatBlockDrops, d.ChatBlockDrops)
	setIfZero(&s.BlockWindow, d.BlockWindow)
	setIfZero(&s.BlockFor, d.BlockFor)
	setIfZero(&s.LoginRefusals, d.LoginRefusals)
	setIfZero(&s.LoginWindow, d.LoginWindow)
	setIfZero(&s.LoginBanFor, d.LoginBanFor)
	setIfZero(&s.MaxSources, d.MaxSources)
	setIfZero(&s.MaxSessions, d.MaxSessions)
	setIfZero(&s.MaxLoginIPs, d.MaxLoginIPs)
	setIfZero(&s.IdleAfter, d.IdleAfter)
	setIfZero(&s.OverflowRate, d.OverflowRate)
	setIfZero(&s.OverflowBurst, d.OverflowBurst)
	if s.Exempt == nil {
		s.Exempt = d.Exempt
	}
	// Copy so that the caller cannot change a live slice.
	s.Exempt = append([]netip.Prefix(nil), s.Exempt...)
	return s
}

func setIfZero[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Validate reports the first field, after defaults, that is out of range.
// A config loader calls it before SetSettings; New and SetSettings do not
// fail, they use what they are given.
func (s Settings) Validate() error {
	s = s.withDefaults()
	switch {
	case s.DatagramRate < 0 || s.ChatRate < 0 || s.OverflowRate < 0:
		return errors.New("flood: rates must be positive")
	case s.DatagramBurst < 1 || s.ChatBurst < 1 || s.OverflowBurst < 1:
		return errors.New("flood: bursts must be at least 1")
	case s.BlockWindow < 0 || s.BlockFor < 0 || s.LoginWindow < 0 || s.LoginBanFor < 0 || s.IdleAfter < 0:
		return errors.New("flood: durations must be positive")
	case s.MaxSources < 1 || s.MaxSessions < 1 || s.MaxLoginIPs < 1:
		return errors.New("flood: table sizes must be at least 1")
	}
	for _, p := range s.Exempt {
		if !p.IsValid() {
			return fmt.Errorf("flood: invalid exempt prefix %v", p)
		}
	}
	return nil
}

func (s *Settings) datagramPolicy() policy {
	return policy{
		rate: s.DatagramRate, burst: s.DatagramBurst,
		blockDrops: s.DatagramBlockDrops, window: s.BlockWindow, blockFor: s.BlockFor,
		max: s.MaxSources, idleAfter: s.IdleAfter, overRate: s.OverflowRate, overBurst: s.OverflowBurst,
	}
}

func (s *Settings) chatPolicy() policy {
	return policy{
		rate: s.ChatRate, burst: s.ChatBurst,
		blockDrops: s.ChatBlockDrops, window: s.BlockWindow, blockFor: s.BlockFor,
		max: s.MaxSessions, idleAfter: s.IdleAfter, overRate: s.OverflowRate, overBurst: s.OverflowBurst,
	}
}

// Action is what to do with a datagram or a chat message.
type Action uint8

const (
	// Allow lets it through.
	Allow Action = iota
	// DropRate drops it: its key is over its rate.
	DropRate
	// DropBlocked drops it: its key is blocked for repeated abuse.
	DropBlocked
)

// String returns "allow", "rate" or "blocked", usable as a metric label.
func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case DropRate:
		return "rate"
	case DropBlocked:
		return "blocked"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Verdict is the answer to a check.
type Verdict struct {
	Action Action
	// BlockStart is true on the one drop that started a block (its Action
	// is DropBlocked): log the block there, not on every dropped datagram.
	BlockStart bool
}

// Allowed reports whether the datagram or chat may go on.
func (v Verdict) Allowed() bool { return v.Action == Allow }

// Stats is a snapshot of a Limiter's tables.
type Stats struct {
	Sources  int // per-source entries
	Sessions int // per-session entries
	LoginIPs int // IPs with recent login refusals or a ban
	// Overflow counts checks that found their table full and used the
	// shared overflow bucket.
	Overflow uint64
	// LoginUntracked counts login refusals not counted because the login
	// table was full.
	LoginUntracked uint64
}

// Limiter applies Settings. Create it with New. Its methods are safe for
// concurrent use.
type Limiter struct {
	settings atomic.Pointer[Settings] // normalised, never nil, never modified
	now      func() time.Time

	sources  table[netip.AddrPort]
	sessions table[string]
	logins   loginTable
}

// New returns a Limiter with s (zero fields take their defaults). now is
// the clock; nil means time.Now.
func New(s Settings, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	l := &Limiter{now: now}
	l.sources.init()
	l.sessions.init()
	l.logins.init()
	l.SetSettings(s)
	return l
}

// SetSettings replaces the settings. Every key picks up the new rate and
// burst on its next check (its tokens carry over, capped at the new burst);
// blocks and bans already running keep their end time.
func (l *Limiter) SetSettings(s Settings) {
	s = s.withDefaults()
	l.settings.Store(&s)
}

// Settings returns the current settings, defaults filled in.
func (l *Limiter) Settings() Settings {
	s := *l.settings.Load()
	s.Exempt = append([]netip.Prefix(nil), s.Exempt...)
	return s
}

// AllowDatagram checks one datagram from src. The relay calls it from its
// single reader goroutine, for every datagram; it does not allocate for a
// known source.
func (l *Limiter) AllowDatagram(src netip.AddrPort) Verdict {
	s := l.settings.Load()
	if !s.Enabled {
		return Verdict{}
	}
	p := s.datagramPolicy()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	return l.sources.allow(src, l.now(), s, &p)
}

// AllowChat checks one chat message from session. It does not allocate for
// a known session.
func (l *Limiter) AllowChat(session string) Verdict {
	s := l.settings.Load()
	if !s.Enabled {
		return Verdict{}
	}
	p := s.chatPolicy()
	return l.sessions.allow(session, l.now(), s, &p)
}

// ForgetSession drops session's state (call it when the session ends), so
// that its entry does not wait for eviction. A block on it ends too.
func (l *Limiter) ForgetSession(session string) { l.sessions.forget(session) }

// LoginRefused records one refused login from ip. It reports whether this
// refusal started a ban (log it once there). Exempt addresses and a
// disabled Limiter record nothing.
func (l *Limiter) LoginRefused(ip netip.Addr) (banStarted bool) {
	s := l.settings.Load()
	if !s.Enabled || s.LoginRefusals < 0 || !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	if exempt(s.Exempt, ip) {
		return false
	}
	return l.logins.refused(loginKey(ip), l.now(), s)
}

// LoginBanned reports whether ip is banned from logging in now.
func (l *Limiter) LoginBanned(ip netip.Addr) bool {
	s := l.settings.Load()
	if !s.Enabled || !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	if exempt(s.Exempt, ip) {
		return false
	}
	return l.logins.banned(loginKey(ip), l.now())
}

// Exempt reports whether ip is in Settings.Exempt, whether or not flood
// control is enabled: the relay's lockdown admits these addresses too.
func (l *Limiter) Exempt(ip netip.Addr) bool {
	return ip.IsValid() && exempt(l.settings.Load().Exempt, ip.Unmap().WithZone(""))
}

// Stats returns the sizes of the tables and the overflow counts.
func (l *Limiter) Stats() Stats {
	return Stats{
		Sources:        l.sources.len(),
		Sessions:       l.sessions.len(),
		LoginIPs:       l.logins.len(),
		Overflow:       l.sources.overflowed.Load() + l.sessions.overflowed.Load(),
		LoginUntracked: l.logins.untracked.Load(),
	}
}

func exempt(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// loginKey is the unit of a login ban: the IPv4 address, or the IPv6 /64.
func loginKey(ip netip.Addr) netip.Addr {
	if ip.Is4() {
		return ip
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return ip
	}
	return p.Addr()
}
