package relay

import (
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// Protocol names, as shown by the admin `who` command.
const (
	ProtoClassic = "classic"
	ProtoV2      = "v2"
)

// Member is one logged-in session. The source address owns it: requests
// naming the member from any other address are refused. Name, Key, Proto,
// Since and Token never change after Join; the address changes only when a
// v2 session resumes from elsewhere (Registry.Move).
type Member struct {
	Name  string    // display form, PRECIS-enforced
	Key   string    // PRECIS compare key: unique among members
	Proto string    // ProtoClassic or ProtoV2
	Since time.Time // login time
	Token string    // v2 session token; empty for classic

	dest     atomic.Pointer[udpio.Dest] // address, reply source, cached sockaddr
	lastSeen atomic.Int64               // unix nanoseconds of the last datagram from the member
	active   bool                       // visible to fan-out; guarded by Registry.mu
	v2       *v2State                   // nil for classic members

	throttledAt atomic.Int64 // unix nanoseconds of the last throttled notice
	icmp        icmpState    // port-unreachable errors (classic)
}

// Addr is the member's address.
func (m *Member) Addr() netip.AddrPort { return m.dest.Load().Addr }

// Dest is the member's prepared destination.
func (m *Member) Dest() *udpio.Dest { return m.dest.Load() }

// LastSeen is when the member last sent a datagram.
func (m *Member) LastSeen() time.Time { return time.Unix(0, m.lastSeen.Load()) }

func (m *Member) touch(now time.Time) { m.lastSeen.Store(now.UnixNano()) }

// RegistryLimits bounds the registry.
type RegistryLimits struct {
	MaxMembers         int  // members in all; a login beyond is refused ErrFull
	MaxPerIP           int  // sessions per source IP; 0 means no per-IP cap
	LimitLoopbackPerIP bool // apply MaxPerIP to loopback too (exempt by default)
}

// quitMemory is how long a quit is remembered, so that a retransmitted `Q`
// (the `EXIT` may have been lost) is answered `EXIT` again.
const quitMemory = 30 * time.Second

// Registry holds the members of the one room. It is the seam between the
// handlers and membership: a multi-node registry (NATS) replaces it together
// with fanout, and nothing else changes.
//
// Readers that fan out call Members, which returns an immutable snapshot
// without taking the lock (copy-on-write, as ergo's membersCache).
type Registry struct {
	limits   RegistryLimits
	dest     func(to netip.AddrPort, local netip.Addr) udpio.Dest
	onChange func(members int) // called under mu after every change, so calls are in order

	mu      sync.RWMutex // protects the fields below
	byAddr  map[netip.AddrPort]*Member
	byKey   map[string]*Member
	byToken map[string]*Member // v2 sessions
	perIP   map[netip.Addr]int
	quits   map[netip.AddrPort]time.Time // recent quits, pruned after quitMemory

	snapshot atomic.Pointer[[]*Member] // written under mu, read without it
}

// NewRegistry returns an empty registry. dest prepares a member's address;
// onChange, if not nil, is told the member count after every change, in
// order, under the registry's lock, so it MUST NOT block or call back.
func NewRegistry(limits RegistryLimits, dest func(to netip.AddrPort, local netip.Addr) udpio.Dest, onChange func(members int)) *Registry {
	if onChange == nil {
		onChange = func(int) {}
	}
	r := &Registry{
		limits:   limits,
		dest:     dest,
		onChange: onChange,
		byAddr:   make(map[netip.AddrPort]*Member),
		byKey:    make(map[string]*Member),
		byToken:  make(map[string]*Member),
		perIP:    make(map[netip.Addr]int),
		quits:    make(map[netip.AddrPort]time.Time),
	}
	r.snapshot.Store(&[]*Member{})
	return r
}

// Join logs in name from addr. It returns the member and whether this was a
// repeat of the login that already holds addr (answered OK again, no second
// join notice). Errors: ErrNameInvalid, ErrNameReserved, ErrNameTaken,
// ErrOtherName, ErrFull.
//
// A new member holds its name and address at once but stays invisible to
// fan-out until Activate: a classic client reads the first datagram after
// its login as the login reply, so nothing may reach it before its OK.
//
// proto is ProtoClassic or ProtoV2; token is the new session's token (v2).
// A repeat must use the same protocol.
func (r *Registry) Join(name, proto, token string, from netip.AddrPort, local netip.Addr, now time.Time) (m *Member, repeat bool, err error) {
	display, key, err := wire.CanonicalName(name)
	if err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.byAddr[from]; cur != nil {
		if cur.Key == key && cur.Proto == proto {
			cur.touch(now)
			return cur, true, nil
		}
		return nil, false, ErrOtherName
	}
	if r.byKey[key] != nil {
		return nil, false, ErrNameTaken
	}
	if len(r.byAddr) >= r.limits.MaxMembers {
		return nil, false, ErrFull
	}
	ip := from.Addr()
	capIP := r.limits.MaxPerIP > 0 && (r.limits.LimitLoopbackPerIP || !ip.IsLoopback())
	if capIP && r.perIP[ip] >= r.limits.MaxPerIP {
		return nil, false, ErrFull
	}
	// name may alias a datagram buffer that is reused once the handler
	// returns, and PRECIS returns its input when it changes nothing: the
	// member keeps copies of its own.
	display, key = cloneNames(display, key)
	m = &Member{Name: display, Key: key, Proto: proto, Since: now}
	d := r.dest(from, local)
	m.dest.Store(&d)
	m.touch(now)
	if proto == ProtoV2 {
		m.Token = token
		m.v2 = newV2State()
		r.byToken[token] = m
	}
	r.byAddr[from] = m
	r.byKey[key] = m
	r.perIP[ip]++
	delete(r.quits, from)
	return m, false, nil
}

// Activate makes a new member visible to fan-out, once its OK has been sent.
// It returns the members who were visible before, the ones to tell about
// the join, or nil if m left in between.
func (r *Registry) Activate(m *Member) (others []*Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byAddr[m.Addr()] != m || m.active {
		return nil
	}
	others = r.Members()
	m.active = true
	r.publishLocked(append(others, m))
	return others
}

// Lookup returns the member holding addr, or nil.
func (r *Registry) Lookup(addr netip.AddrPort) *Member {
	r.mu.RLock()
	m := r.byAddr[addr]
	r.mu.RUnlock()
	return m
}

// ByToken returns the v2 session with token, or nil.
func (r *Registry) ByToken(token string) *Member {
	r.mu.RLock()
	m := r.byToken[token]
	r.mu.RUnlock()
	return m
}

// Move gives m a new address (a v2 session resuming after NAT rebinding or
// a network change). It fails with ErrOtherName if another member holds
// to, and with ErrNoMember if m is gone. Nobody sees a leave or a join.
func (r *Registry) Move(m *Member, to netip.AddrPort, local netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := m.Addr()
	if r.byAddr[old] != m {
		return ErrNoMember
	}
	if old == to {
		return nil
	}
	if r.byAddr[to] != nil {
		return ErrOtherName
	}
	delete(r.byAddr, old)
	if ip := old.Addr(); r.perIP[ip] <= 1 {
		delete(r.perIP, ip)
	} else {
		r.perIP[ip]--
	}
	r.perIP[to.Addr()]++
	r.byAddr[to] = m
	d := r.dest(to, local)
	m.dest.Store(&d)
	return nil
}

// ByName returns the member whose name has the same compare key as name.
func (r *Registry) ByName(name string) *Member {
	_, key, err := wire.CanonicalName(name)
	if err != nil {
		return nil
	}
	r.mu.RLock()
	m := r.byKey[key]
	r.mu.RUnlock()
	return m
}

// Leave removes m if it is still a member and remembers its address for
// quitMemory. It reports whether m was removed by this call, so that two
// racing removals announce the leave once.
func (r *Registry) Leave(m *Member, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	addr := m.Addr()
	if r.byAddr[addr] != m {
		return false
	}
	delete(r.byAddr, addr)
	delete(r.byKey, m.Key)
	if m.Token != "" {
		delete(r.byToken, m.Token)
	}
	ip := addr.Addr()
	if r.perIP[ip]--; r.perIP[ip] <= 0 {
		delete(r.perIP, ip)
	}
	r.rememberQuitLocked(addr, now)
	if m.active {
		r.publishLocked(without(r.Members(), m))
	}
	return true
}

// RecentlyQuit reports whether addr quit within quitMemory of now.
func (r *Registry) RecentlyQuit(addr netip.AddrPort, now time.Time) bool {
	r.mu.RLock()
	t, ok := r.quits[addr]
	r.mu.RUnlock()
	return ok && now.Sub(t) < quitMemory
}

// rememberQuitLocked records a quit. The memory is bounded by MaxMembers:
// expired entries are pruned first, then, if still full, the new one is not
// kept (its repeated Q is then dropped as not logged in, and counted).
// r.mu must be held.
func (r *Registry) rememberQuitLocked(addr netip.AddrPort, now time.Time) {
	if len(r.quits) >= r.limits.MaxMembers {
		for a, t := range r.quits {
			if now.Sub(t) >= quitMemory {
				delete(r.quits, a)
			}
		}
		if len(r.quits) >= r.limits.MaxMembers {
			return
		}
	}
	r.quits[addr] = now
}

// publishLocked makes s the snapshot. r.mu must be held for writing.
//
// The snapshot is copy-on-write without the cost of a copy per join:
// Activate appends in place, which readers cannot see, because they hold
// slice headers no longer than before and nothing below their length
// changes; only when the array is full does append copy it (doubling, so
// joining n members costs O(n) in all, not O(n²)). Leave copies
// (without), so no element a reader may hold ever changes.
func (r *Registry) publishLocked(s []*Member) {
	r.snapshot.Store(&s)
	r.onChange(len(s))
}

// without returns a new slice holding s without m, with room to grow.
func without(s []*Member, m *Member) []*Member {
	out := make([]*Member, 0, cap(s))
	for _, o := range s {
		if o != m {
			out = append(out, o)
		}
	}
	return out
}

// cloneNames copies a display name and its compare key, sharing one copy
// when they are equal.
func cloneNames(display, key string) (string, string) {
	display = strings.Clone(display)
	if key == display {
		return display, display
	}
	return display, strings.Clone(key)
}

// Members returns every active member, in the order they became active.
// The slice is a snapshot: it never changes, and the caller MUST NOT
// modify it or append to it in place (the registry appends beyond its
// length; cap it first, as in append(s[:len(s):len(s)], x)). Taking it
// costs one atomic load.
func (r *Registry) Members() []*Member { return *r.snapshot.Load() }

// Len returns the number of members.
func (r *Registry) Len() int { return len(r.Members()) }

// Sorted returns the members sorted by name, for display.
func (r *Registry) Sorted() []*Member {
	s := append([]*Member(nil), r.Members()...)
	sort.Slice(s, func(i, j int) bool { return s[i].Key < s[j].Key })
	return s
}
