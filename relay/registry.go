package relay

import (
	"net/netip"
	"sort"
	"strconv"
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

// Member is one logged-in session on this node. The source address owns
// it: requests naming the member from any other address are refused. ID,
// Name, Key, Proto, Since and Token never change after Join; the address
// changes only when a v2 session resumes from elsewhere (Registry.Move).
type Member struct {
	ID    string    // the session's owner ID in the NameDirectory; unique, never reused
	Name  string    // display form, PRECIS-enforced
	Key   string    // PRECIS compare key: unique among members
	Proto string    // ProtoClassic or ProtoV2
	Since time.Time // login time
	Token string    // v2 session token; empty for classic

	dest     atomic.Pointer[udpio.Dest] // address, reply source, cached sockaddr
	lastSeen atomic.Int64               // unix nanoseconds of the last datagram from the member
	v2       *v2State                   // nil for classic members

	throttledAt atomic.Int64 // unix nanoseconds of the last throttled notice
	icmp        icmpState    // port-unreachable errors (classic)

	rev   atomic.Uint32        // the v2 revision the session speaks (wire.Rev at most); 0 for classic
	inbox atomic.Pointer[room] // revision 1: the session's own room of direct messages; set before the welcome

	mu    sync.Mutex   // protects rooms; taken under room.mu
	rooms []membership // the rooms the member is in, in the order it joined them

	left []*room // the rooms it was in when removed; written once, by the remove that won
}

// membership is a member's place in one room.
type membership struct {
	r    *room
	base uint64 // the room's latest seq when the member joined: its welcome's
}

// enter records that m is in r since event base; false if it was already.
// r.mu must be held.
func (m *Member) enter(r *room, base uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, x := range m.rooms {
		if x.r == r {
			return false
		}
	}
	m.rooms = append(m.rooms, membership{r: r, base: base})
	return true
}

// exit records that m left r; false if it was not in it. r.mu must be held.
func (m *Member) exit(r *room) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range m.rooms {
		if x.r == r {
			m.rooms = append(m.rooms[:i], m.rooms[i+1:]...)
			return true
		}
	}
	return false
}

// baseIn returns the seq m's membership of r began at, if m is in r.
func (m *Member) baseIn(r *room) (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, x := range m.rooms {
		if x.r == r {
			return x.base, true
		}
	}
	return 0, false
}

// roomCount returns how many rooms m is in.
func (m *Member) roomCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rooms)
}

// roomList returns the rooms m is in (a copy), in the order it joined them.
func (m *Member) roomList() []*room {
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := make([]*room, len(m.rooms))
	for i, x := range m.rooms {
		rs[i] = x.r
	}
	return rs
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

// Registry holds this node's sessions: who is logged in from which address,
// with which token, and how many from each IP. Which session holds a name
// relay-wide is the NameDirectory's to say; which rooms a member is in,
// the rooms'.
type Registry struct {
	limits   RegistryLimits
	dest     func(to netip.AddrPort, local netip.Addr) udpio.Dest
	names    NameDirectory
	onChange func(members int) // called under mu after every change, so calls are in order

	mu      sync.RWMutex // protects the fields below
	byAddr  map[netip.AddrPort]*Member
	byKey   map[string]*Member // this node's sessions by name
	byToken map[string]*Member // v2 sessions
	perIP   map[netip.Addr]int
	quits   map[netip.AddrPort]time.Time // recent quits, pruned after quitMemory
}

// NewRegistry returns an empty registry whose names are claimed in names
// (a fresh in-memory directory if nil). dest prepares a member's address;
// onChange, if not nil, is told the member count after every change, in
// order, under the registry's lock, so it MUST NOT block or call back.
func NewRegistry(limits RegistryLimits, names NameDirectory, dest func(to netip.AddrPort, local netip.Addr) udpio.Dest, onChange func(members int)) *Registry {
	if onChange == nil {
		onChange = func(int) {}
	}
	if names == nil {
		names = newMemDirectory()
	}
	return &Registry{
		limits:   limits,
		dest:     dest,
		names:    names,
		onChange: onChange,
		byAddr:   make(map[netip.AddrPort]*Member),
		byKey:    make(map[string]*Member),
		byToken:  make(map[string]*Member),
		perIP:    make(map[netip.Addr]int),
		quits:    make(map[netip.AddrPort]time.Time),
	}
}

// sessionIDs numbers this process's sessions; sessionPrefix, random per
// process, makes their IDs unique across the relays sharing a NameDirectory
// (a directory compares owners: two nodes' session 1 must not be one owner).
var (
	sessionIDs    atomic.Uint64
	sessionPrefix = randomHex(6) + "."
)

// Join logs in name from addr. It returns the member and whether this was a
// repeat of the login that already holds addr (answered OK again, no second
// join notice). Errors: wire.ErrNameInvalid, wire.ErrNameReserved,
// ErrNameTaken, ErrOtherName, ErrFull.
//
// A new member is in no room: the caller adds it to its room once its OK
// has been sent (a classic client reads the first datagram after its login
// as the login reply, so nothing may reach it before its OK).
//
// proto is ProtoClassic or ProtoV2; token is the new session's token (v2).
// A repeat must use the same protocol. The name is claimed in the
// directory without the registry's lock held.
func (r *Registry) Join(name, proto, token string, from netip.AddrPort, local netip.Addr, now time.Time) (m *Member, repeat bool, err error) {
	display, key, err := wire.CanonicalName(name)
	if err != nil {
		return nil, false, err
	}
	if cur := r.Lookup(from); cur != nil {
		return r.repeat(cur, key, proto, now)
	}
	// name may alias a datagram buffer that is reused once the handler
	// returns, and PRECIS returns its input when it changes nothing: the
	// member keeps copies of its own.
	display, key = cloneNames(display, key)
	m = &Member{ID: sessionPrefix + strconv.FormatUint(sessionIDs.Add(1), 36), Name: display, Key: key, Proto: proto, Since: now}
	if err := r.names.Claim(key, m.ID); err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	err = r.addLocked(m, token, from, local, now)
	r.mu.Unlock()
	if err != nil {
		r.names.Release(key, m.ID)
		return nil, false, err
	}
	return m, false, nil
}

// Adopt takes over a session another process began (SessionRecord: the
// same ID, name and protocol), at from: the name is claimed for the same
// owner, which succeeds while the session's old holder still has it (a
// relay that died, until its lease runs out, or this relay before a
// restart). The member is in no room; the caller adds it to its rooms.
// Errors as Join's.
func (r *Registry) Adopt(rec SessionRecord, token string, from netip.AddrPort, local netip.Addr, now time.Time) (*Member, error) {
	display, key, err := wire.CanonicalName(rec.Name)
	if err != nil {
		return nil, err
	}
	if rec.Proto != ProtoV2 && rec.Proto != ProtoClassic {
		return nil, wire.ErrNameInvalid
	}
	if cur := r.Lookup(from); cur != nil {
		return nil, ErrOtherName
	}
	m := &Member{ID: rec.ID, Name: display, Key: key, Proto: rec.Proto, Since: now}
	if err := r.names.Claim(key, m.ID); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.byKey[key] != nil {
		err = ErrNameTaken // held here already (a second resume raced this one)
	} else {
		err = r.addLocked(m, token, from, local, now)
	}
	r.mu.Unlock()
	if err != nil {
		if err != ErrNameTaken {
			r.names.Release(key, m.ID)
		}
		return nil, err
	}
	return m, nil
}

// repeat answers a login from an address that holds cur.
func (r *Registry) repeat(cur *Member, key, proto string, now time.Time) (*Member, bool, error) {
	if cur.Key == key && cur.Proto == proto {
		cur.touch(now)
		return cur, true, nil
	}
	return nil, false, ErrOtherName
}

// addLocked adds m, whose name is claimed, unless a cap is reached or from
// was taken meanwhile (never for one sender: the dispatcher handles a
// sender's datagrams one at a time). On an error the caller releases m's
// claim. r.mu must be held.
func (r *Registry) addLocked(m *Member, token string, from netip.AddrPort, local netip.Addr, now time.Time) error {
	if r.byAddr[from] != nil {
		return ErrOtherName
	}
	if len(r.byAddr) >= r.limits.MaxMembers {
		return ErrFull
	}
	ip := from.Addr()
	capIP := r.limits.MaxPerIP > 0 && (r.limits.LimitLoopbackPerIP || !ip.IsLoopback())
	if capIP && r.perIP[ip] >= r.limits.MaxPerIP {
		return ErrFull
	}
	d := r.dest(from, local)
	m.dest.Store(&d)
	m.touch(now)
	if m.Proto == ProtoV2 {
		m.Token = token
		m.v2 = newV2State()
		r.byToken[token] = m
	}
	r.byAddr[from] = m
	r.byKey[m.Key] = m
	r.perIP[ip]++
	delete(r.quits, from)
	r.onChange(len(r.byAddr))
	return nil
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

// Has reports whether m is still logged in.
func (r *Registry) Has(m *Member) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byKey[m.Key] == m
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

// Leave removes m if it is still a member, releases its name and
// remembers its address for quitMemory. It reports whether m was removed
// by this call, so that two racing removals announce the leave once. The
// caller takes m out of its rooms.
func (r *Registry) Leave(m *Member, now time.Time) bool {
	r.mu.Lock()
	addr := m.Addr()
	if r.byAddr[addr] != m {
		r.mu.Unlock()
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
	r.onChange(len(r.byAddr))
	r.mu.Unlock()
	r.names.Release(m.Key, m.ID)
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

// cloneNames copies a display name and its compare key, sharing one copy
// when they are equal.
func cloneNames(display, key string) (string, string) {
	display = strings.Clone(display)
	if key == display {
		return display, display
	}
	return display, strings.Clone(key)
}

// Members returns every session on this node, in no order. It copies
// them under the read lock: O(n), for sweeps and admin listings, never for
// fan-out (rooms keep their own snapshots).
func (r *Registry) Members() []*Member {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s := make([]*Member, 0, len(r.byAddr))
	for _, m := range r.byAddr {
		s = append(s, m)
	}
	return s
}

// Len returns the number of sessions on this node.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byAddr)
}

// Sorted returns the sessions sorted by name, for display.
func (r *Registry) Sorted() []*Member {
	s := r.Members()
	sort.Slice(s, func(i, j int) bool { return s[i].Key < s[j].Key })
	return s
}
