package flood

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

const (
	// sweepEvery is how often a check sweeps its whole table of idle
	// entries (lazily: the first check after the interval does it).
	sweepEvery = time.Minute
	// sampleSize is how many entries a new key on a full table inspects
	// for eviction. Map iteration starts at a random position, so this is
	// a random sample.
	sampleSize = 32
	// resampleAfter: after a sample found (almost) nothing to evict, new
	// keys that find the table full go straight to the overflow bucket for
	// this long, so that a flood of new keys does not pay a sample each.
	resampleAfter = 10 * time.Millisecond
)

// policy is one table's share of the settings.
type policy struct {
	rate       rate.Limit
	burst      int
	blockDrops int // more drops than this within window start a block; <0: never
	window     time.Duration
	blockFor   time.Duration
	max        int           // table cap
	idleAfter  time.Duration // how long a repeat key is kept after its last event
	overRate   rate.Limit
	overBurst  int
}

// entry is one key's state. It is guarded by its table's mu.
type entry struct {
	lim          *rate.Limiter
	conf         *Settings // the settings lim's rate and burst were set from
	drops        int       // rate drops since dropsStart
	dropsStart   time.Time
	blockedUntil time.Time // zero: not blocked
	lastSeen     time.Time // last check
	repeat       bool      // checked more than once
}

// check decides one event. r and b are the bucket's rate and burst under
// s; blockable is false for the shared overflow bucket, which must never
// block everyone.
func (e *entry) check(now time.Time, s *Settings, r rate.Limit, b int, p *policy, blockable bool) Verdict {
	if e.conf != s {
		e.configure(now, s, r, b)
	}
	e.repeat = e.repeat || !e.lastSeen.IsZero()
	e.lastSeen = now
	if !e.blockedUntil.IsZero() {
		if now.Before(e.blockedUntil) {
			return Verdict{Action: DropBlocked}
		}
		e.blockedUntil = time.Time{}
		e.drops = 0
	}
	if e.lim.AllowN(now, 1) {
		return Verdict{}
	}
	if !blockable || p.blockDrops < 0 {
		return Verdict{Action: DropRate}
	}
	if e.drops == 0 || now.Sub(e.dropsStart) >= p.window {
		e.drops, e.dropsStart = 0, now
	}
	e.drops++
	if e.drops > p.blockDrops {
		e.drops = 0
		e.blockedUntil = now.Add(p.blockFor)
		return Verdict{Action: DropBlocked, BlockStart: true}
	}
	return Verdict{Action: DropRate}
}

// configure applies a new rate and burst, keeping the tokens (capped).
func (e *entry) configure(now time.Time, s *Settings, r rate.Limit, b int) {
	e.conf = s
	if e.lim == nil {
		e.lim = rate.NewLimiter(r, b)
		return
	}
	if e.lim.Limit() != r {
		e.lim.SetLimitAt(now, r)
	}
	if e.lim.Burst() != b {
		e.lim.SetBurstAt(now, b)
	}
}

// idle reports whether e may be forgotten. Forgetting loses no rate state
// when e is not blocked, not counting drops, and its bucket is full: a new
// entry would behave the same. But a key seen more than once (a member,
// not a spoofed source) also keeps its place in the table until it has
// been silent for idleAfter, so that a flood of new keys cannot push it
// into the overflow bucket.
func (e *entry) idle(now time.Time, s *Settings, p *policy) bool {
	if now.Before(e.blockedUntil) {
		return false
	}
	if e.drops > 0 && now.Sub(e.dropsStart) < p.window {
		return false
	}
	if e.repeat && now.Sub(e.lastSeen) < p.idleAfter {
		return false
	}
	// Entries in a table never have rate Inf (allow skips the table then).
	burst := p.burst
	if e.conf != s {
		burst = e.lim.Burst()
	}
	return e.lim.TokensAt(now) >= float64(burst)
}

// table holds the entries of one kind of key.
type table[K comparable] struct {
	overflowed atomic.Uint64 // checks that used over; not guarded by mu

	mu          sync.Mutex // guards the fields below
	m           map[K]*entry
	over        entry     // shared by the keys that do not fit
	lastSweep   time.Time // last full sweep
	noRoomUntil time.Time // new keys go to over until then
}

func (t *table[K]) init() { t.m = make(map[K]*entry) }

func (t *table[K]) allow(key K, now time.Time, s *Settings, p *policy) Verdict {
	if p.rate == rate.Inf {
		return Verdict{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.lastSweep) >= sweepEvery {
		t.sweep(now, s, p)
	}
	e := t.m[key]
	if e == nil {
		if e = t.add(key, now, s, p); e == nil {
			t.overflowed.Add(1)
			return t.over.check(now, s, p.overRate, p.overBurst, p, false)
		}
	}
	return e.check(now, s, p.rate, p.burst, p, true)
}

// add creates key's entry, evicting idle entries if the table is full. It
// returns nil if there is no room. t.mu must be held.
func (t *table[K]) add(key K, now time.Time, s *Settings, p *policy) *entry {
	if len(t.m) >= p.max {
		if now.Before(t.noRoomUntil) {
			return nil
		}
		n, freed := 0, 0
		for k, e := range t.m {
			if e.idle(now, s, p) {
				delete(t.m, k)
				freed++
			}
			if n++; n == sampleSize {
				break
			}
		}
		if freed < sampleSize/8 {
			// Mostly live entries: do not pay a sample per new key.
			t.noRoomUntil = now.Add(resampleAfter)
		}
		if len(t.m) >= p.max {
			return nil
		}
	}
	e := &entry{lim: rate.NewLimiter(p.rate, p.burst), conf: s}
	t.m[key] = e
	return e
}

// sweep deletes every idle entry. t.mu must be held.
func (t *table[K]) sweep(now time.Time, s *Settings, p *policy) {
	t.lastSweep = now
	t.noRoomUntil = time.Time{}
	for k, e := range t.m {
		if e.idle(now, s, p) {
			delete(t.m, k)
		}
	}
}

func (t *table[K]) forget(key K) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, key)
}

func (t *table[K]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// loginEntry is one IP's (or IPv6 /64's) refusals and ban.
type loginEntry struct {
	refusals    int       // since start
	start       time.Time // start of the counting window
	bannedUntil time.Time
}

func (e *loginEntry) idle(now time.Time, window time.Duration) bool {
	return !now.Before(e.bannedUntil) && (e.refusals == 0 || now.Sub(e.start) >= window)
}

// loginTable holds the IPs with recent refusals or a ban.
type loginTable struct {
	untracked atomic.Uint64 // refusals not recorded for lack of room; not guarded by mu

	mu        sync.Mutex // guards the fields below
	m         map[netip.Addr]*loginEntry
	lastSweep time.Time
}

func (t *loginTable) init() { t.m = make(map[netip.Addr]*loginEntry) }

func (t *loginTable) refused(ip netip.Addr, now time.Time, s *Settings) (banStarted bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.lastSweep) >= sweepEvery {
		t.lastSweep = now
		for k, e := range t.m {
			if e.idle(now, s.LoginWindow) {
				delete(t.m, k)
			}
		}
	}
	e := t.m[ip]
	if e == nil {
		if len(t.m) >= s.MaxLoginIPs {
			n := 0
			for k, e := range t.m {
				if e.idle(now, s.LoginWindow) {
					delete(t.m, k)
				}
				if n++; n == sampleSize {
					break
				}
			}
			if len(t.m) >= s.MaxLoginIPs {
				t.untracked.Add(1)
				return false
			}
		}
		e = &loginEntry{}
		t.m[ip] = e
	}
	if now.Before(e.bannedUntil) {
		return false // refusals during a ban do not extend it
	}
	if e.refusals == 0 || now.Sub(e.start) >= s.LoginWindow {
		e.refusals, e.start = 0, now
	}
	e.refusals++
	if e.refusals >= s.LoginRefusals {
		e.refusals = 0
		e.bannedUntil = now.Add(s.LoginBanFor)
		return true
	}
	return false
}

func (t *loginTable) banned(ip netip.Addr, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[ip]
	return e != nil && now.Before(e.bannedUntil)
}

func (t *loginTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
