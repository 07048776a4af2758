package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// Moderation: the operator's bans, mutes and lockdown, set on the admin
// socket (admin_mod.go) and consulted by the relay core through two
// methods:
//
//   - Server.admit, before a new session is added: a banned name or
//     address is refused "banned", and during a lockdown every address
//     outside --limit-exempt is refused "lockdown".
//   - Server.mutedIn, before a chat is broadcast: a muted member's chat is
//     refused with the reason and reaches nobody.
//
// Every change goes through the operator's state first (operator.go): with
// Config.Operator it is stored, and a restart (or another relay sharing the
// store) puts it back in force; without, a restart lifts every ban, mute
// and lockdown.

// Kinds of ban, as listed by `bans`.
const (
	BanName = "name" // a name, by its PRECIS compare key: every case and width variant
	BanIP   = "ip"   // one address (a /32 or /128)
	BanCIDR = "cidr" // a prefix
)

// Moderation errors, answered on the admin socket.
var (
	ErrNoBan        = errors.New("relay: no such ban")
	ErrNoMute       = errors.New("relay: no such mute")
	ErrBadDuration  = errors.New("relay: bad duration: use e.g. 90s, 30m, 12h or 7d")
	ErrBadBanTarget = errors.New("relay: not a name, an IP address or a CIDR prefix")
)

// maxModDuration bounds --for (and keeps days*24h from overflowing).
const maxModDuration = 100 * 365 * 24 * time.Hour

// banEntry is one ban. A name ban has key; an address ban has prefix.
type banEntry struct {
	target  string       // as listed: the name's display form, the IP, or the prefix
	kind    string       // BanName, BanIP or BanCIDR
	key     string       // the name's compare key; "" for an address ban
	prefix  netip.Prefix // the banned addresses, unmapped; invalid for a name ban
	reason  string       // may be empty
	by      string       // who set it (the admin socket's peer)
	set     time.Time    // when it was set
	expires time.Time    // zero: never
}

// muteEntry is one mute: a name, relay-wide or in one room.
type muteEntry struct {
	name, nameKey string    // the member's display form and compare key
	room, roomKey string    // "" for relay-wide
	by            string    // who set it
	set           time.Time // when it was set
	expires       time.Time // zero: never
}

type muteKey struct{ name, room string }

// expired reports whether a deadline has passed; zero is never.
func expired(expires, now time.Time) bool { return !expires.IsZero() && !now.Before(expires) }

// moderation holds the bans, mutes and the lockdown flag. Its methods are
// safe for concurrent use; every expired entry is dropped by the first
// method that sees it (no goroutine).
type moderation struct {
	now func() time.Time // the relay's clock: when a ban or mute is set, listed or lifted

	// nbans and nmutes mirror the map sizes, so that admit and mutedIn cost
	// one atomic load while nobody is banned or muted (every chat asks).
	nbans, nmutes atomic.Int32
	locked        atomic.Bool

	mu    sync.Mutex                 // protects the fields below
	names map[string]*banEntry       // name bans by compare key
	addrs map[netip.Prefix]*banEntry // IP and CIDR bans
	mutes map[muteKey]*muteEntry
}

func newModeration(now func() time.Time) *moderation {
	return &moderation{
		now:   now,
		names: make(map[string]*banEntry),
		addrs: make(map[netip.Prefix]*banEntry),
		mutes: make(map[muteKey]*muteEntry),
	}
}

// pruneLocked drops the expired bans and mutes. m.mu must be held.
func (m *moderation) pruneLocked(now time.Time) {
	for k, b := range m.names {
		if expired(b.expires, now) {
			delete(m.names, k)
		}
	}
	for k, b := range m.addrs {
		if expired(b.expires, now) {
			delete(m.addrs, k)
		}
	}
	for k, e := range m.mutes {
		if expired(e.expires, now) {
			delete(m.mutes, k)
		}
	}
	m.countLocked()
}

func (m *moderation) countLocked() {
	m.nbans.Store(int32(len(m.names) + len(m.addrs)))
	m.nmutes.Store(int32(len(m.mutes)))
}

// ban adds b, set when it says (now if it does not), replacing a ban of
// the same name or prefix. It reports whether one was replaced.
func (m *moderation) ban(b banEntry) (replaced bool) {
	now := m.now()
	if b.set.IsZero() {
		b.set = now
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	if b.kind == BanName {
		_, replaced = m.names[b.key]
		m.names[b.key] = &b
	} else {
		_, replaced = m.addrs[b.prefix]
		m.addrs[b.prefix] = &b
	}
	m.countLocked()
	return replaced
}

// unban removes the ban of t's name or prefix, returning it, or ErrNoBan.
func (m *moderation) unban(t banEntry) (banEntry, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	var b *banEntry
	if t.kind == BanName {
		b = m.names[t.key]
		delete(m.names, t.key)
	} else {
		b = m.addrs[t.prefix]
		delete(m.addrs, t.prefix)
	}
	m.countLocked()
	if b == nil {
		return banEntry{}, ErrNoBan
	}
	return *b, nil
}

// findBan returns the ban in force of t's name or prefix.
func (m *moderation) findBan(t banEntry) (banEntry, bool) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	b := m.addrs[t.prefix]
	if t.kind == BanName {
		b = m.names[t.key]
	}
	if b == nil {
		return banEntry{}, false
	}
	return *b, true
}

// banned returns the ban that refuses nameKey or ip now: the name's
// first, else the narrowest prefix holding ip. ip may be IPv4-mapped.
func (m *moderation) banned(nameKey string, ip netip.Addr, now time.Time) (banEntry, bool) {
	if m.nbans.Load() == 0 {
		return banEntry{}, false
	}
	ip = ip.Unmap().WithZone("")
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	if b := m.names[nameKey]; b != nil && nameKey != "" {
		return *b, true
	}
	var hit *banEntry
	for p, b := range m.addrs {
		if ip.IsValid() && p.Contains(ip) && (hit == nil || p.Bits() > hit.prefix.Bits()) {
			hit = b
		}
	}
	if hit == nil {
		return banEntry{}, false
	}
	return *hit, true
}

// bans lists the bans in force: names first, then addresses, each sorted.
func (m *moderation) bans() []banEntry {
	now := m.now()
	m.mu.Lock()
	out := make([]banEntry, 0, len(m.names)+len(m.addrs))
	m.pruneLocked(now)
	for _, b := range m.names {
		out = append(out, *b)
	}
	for _, b := range m.addrs {
		out = append(out, *b)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case (a.kind == BanName) != (b.kind == BanName):
			return a.kind == BanName
		case a.kind == BanName:
			return a.key < b.key
		case a.prefix.Addr() != b.prefix.Addr():
			return a.prefix.Addr().Less(b.prefix.Addr())
		}
		return a.prefix.Bits() < b.prefix.Bits()
	})
	return out
}

// mute adds e, set when it says (now if it does not), replacing a mute of
// the same name in the same room.
func (m *moderation) mute(e muteEntry) (replaced bool) {
	now := m.now()
	if e.set.IsZero() {
		e.set = now
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	k := muteKey{e.nameKey, e.roomKey}
	_, replaced = m.mutes[k]
	m.mutes[k] = &e
	m.countLocked()
	return replaced
}

// unmute removes the mute of nameKey in roomKey ("" relay-wide), or
// returns ErrNoMute.
func (m *moderation) unmute(nameKey, roomKey string) (muteEntry, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	k := muteKey{nameKey, roomKey}
	e := m.mutes[k]
	delete(m.mutes, k)
	m.countLocked()
	if e == nil {
		return muteEntry{}, ErrNoMute
	}
	return *e, nil
}

// findMute returns the mute in force of nameKey in roomKey ("" relay-wide).
func (m *moderation) findMute(nameKey, roomKey string) (muteEntry, bool) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	e := m.mutes[muteKey{nameKey, roomKey}]
	if e == nil {
		return muteEntry{}, false
	}
	return *e, true
}

// mutedIn returns the mute that silences nameKey in roomKey now: the
// relay-wide one first, else the room's ("" asks relay-wide only).
func (m *moderation) mutedIn(nameKey, roomKey string, now time.Time) (muteEntry, bool) {
	if m.nmutes.Load() == 0 {
		return muteEntry{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := [2]muteKey{{nameKey, ""}, {nameKey, roomKey}}
	n := 1
	if roomKey != "" {
		n = 2
	}
	for _, k := range keys[:n] {
		if e := m.mutes[k]; e != nil {
			if expired(e.expires, now) {
				delete(m.mutes, k)
				m.countLocked()
				continue
			}
			return *e, true
		}
	}
	return muteEntry{}, false
}

// muteList lists the mutes in force, by name, relay-wide before rooms.
func (m *moderation) muteList() []muteEntry {
	now := m.now()
	m.mu.Lock()
	out := make([]muteEntry, 0, len(m.mutes))
	m.pruneLocked(now)
	for _, e := range m.mutes {
		out = append(out, *e)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].nameKey != out[j].nameKey {
			return out[i].nameKey < out[j].nameKey
		}
		return out[i].roomKey < out[j].roomKey
	})
	return out
}

// setLockdown turns the lockdown on or off; it reports whether that
// changed anything.
func (m *moderation) setLockdown(on bool) bool { return m.locked.CompareAndSwap(!on, on) }

// parseBanTarget reads what `ban` and `unban` name: an IP address (IPv4-
// mapped IPv6 is taken as IPv4), a CIDR prefix (masked), or a member's
// name (by compare key, so case and width variants are one ban).
func parseBanTarget(raw string) (banEntry, error) {
	if ip, err := netip.ParseAddr(raw); err == nil {
		ip = ip.Unmap().WithZone("")
		p := netip.PrefixFrom(ip, ip.BitLen())
		return banEntry{target: ip.String(), kind: BanIP, prefix: p}, nil
	}
	if p, err := netip.ParsePrefix(raw); err == nil {
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		if p.IsSingleIP() {
			return banEntry{target: p.Addr().String(), kind: BanIP, prefix: p}, nil
		}
		return banEntry{target: p.String(), kind: BanCIDR, prefix: p}, nil
	}
	if strings.ContainsAny(raw, "/:") {
		return banEntry{}, fmt.Errorf("%w: %q", ErrBadBanTarget, raw)
	}
	display, key, err := wire.CanonicalName(raw)
	if err != nil {
		return banEntry{}, fmt.Errorf("%w: %q", ErrBadBanTarget, raw)
	}
	return banEntry{target: display, kind: BanName, key: key}, nil
}

// parseModDuration reads --for: a time.ParseDuration string, or a whole
// number of days with "d", optionally followed by one ("7d", "1d12h").
// It must be positive and at most 100 years.
func parseModDuration(s string) (time.Duration, error) {
	var days time.Duration
	if d, rest, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 36500 {
			return 0, ErrBadDuration
		}
		days, s = time.Duration(n)*24*time.Hour, rest
	}
	var d time.Duration
	if s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return 0, ErrBadDuration
		}
	}
	d += days
	if d <= 0 || d > maxModDuration {
		return 0, ErrBadDuration
	}
	return d, nil
}

// mod returns the server's moderation state.
func (s *Server) mod() *moderation { return s.moderation }

// admit decides whether a new session may log in as nameKey (a PRECIS
// compare key, from wire.CanonicalName) from ip: it refuses a banned name
// or address (code LoginBanned, the reason with the ban's reason and the
// time left) and, during a lockdown, every address outside --limit-exempt
// (code LoginLockdown). code is a login result and the v2 refused code;
// reason is worded in the relay's language and fits a classic refusal
// (wire.MaxReasonBytes). The core calls it for new logins only, not for a
// repeated login from the address that already holds the name.
func (s *Server) admit(nameKey string, ip netip.Addr, now time.Time) (code, reason string, ok bool) {
	mod := s.mod()
	if b, hit := mod.banned(nameKey, ip, now); hit {
		return LoginBanned, s.modWords().bannedReason(b, now), false
	}
	if mod.locked.Load() && !s.flood.Exempt(ip) {
		return LoginLockdown, s.modWords().lockdownRefusal, false
	}
	return "", "", true
}

// mutedIn reports whether m may not chat in the room whose compare key is
// roomKey (from wire.CanonicalRoom; "" asks about relay-wide mutes only):
// muted, with the refusal worded in the relay's language, if m's name is
// muted relay-wide or in that room. It costs one atomic load while nobody
// is muted. The core refuses such a chat (v2: error code wire.CodeMuted)
// and sends it to nobody.
func (s *Server) mutedIn(m *Member, roomKey string, now time.Time) (reason string, muted bool) {
	e, hit := s.mod().mutedIn(m.Key, roomKey, now)
	if !hit {
		return "", false
	}
	return s.modWords().mutedReason(e, now), true
}
