package relay

import (
	"crypto/rand"
	"encoding/hex"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// room is one room on this node: its log (shared, behind RoomLog), the
// order in which its events reach the local fan-out (feed), and which of
// this node's members are in it.
type room struct {
	name string // as displayed
	key  string // compare key (wire.CanonicalRoom); "" for an inbox
	log  RoomLog

	feed struct {
		mu    sync.Mutex       // protects next and early; taken before fanout.mu
		next  uint64           // the seq the fan-out takes next
		early map[uint64]Event // events sequenced while an earlier one was still on its way
	}

	mu  sync.Mutex // protects set and the member list behind members (writers only)
	set settings
	// members is the room's members on this node, in the order they joined,
	// as an immutable snapshot: written under mu, read without it.
	members atomic.Pointer[[]*Member]

	// unfollow stops following a shared log (RoomFollower); nil if not
	// followed. Guarded by roomSet.mu.
	unfollow  func()
	lag       atomic.Uint64 // events the shared log held beyond the last one handed over
	unflushed atomic.Uint32 // events handed over from the shared log since the last flush (follow.go)

	batch struct {
		mu            sync.Mutex // protects joins, leaves and pending; leaf
		joins, leaves batch      // announcements gathered in a big room
		pending       bool       // the room is in Server.pending
	}
}

// batch is the joins or leaves gathered for one announcement.
type batch struct {
	names []string // the first batchNames of them
	count int
}

func newRoom(name string, log RoomLog) *room {
	r := &room{name: name, log: log}
	r.feed.next = log.Latest() + 1
	r.members.Store(&[]*Member{})
	return r
}

// newInbox returns m's inbox: a room of one that is not among m's rooms
// (nobody joins or leaves it; it ends with the session).
func newInbox(log RoomLog, m *Member) *room {
	r := newRoom(wire.Inbox, log)
	r.members.Store(&[]*Member{m})
	return r
}

// Members returns the room's members on this node, in the order they
// joined. The slice is a snapshot: it never changes, and the caller MUST
// NOT modify it or append to it in place (the room appends beyond its
// length; cap it first, as in append(s[:len(s):len(s)], x)). Taking it
// costs one atomic load, no lock (ergo's membersCache).
func (r *room) Members() []*Member { return *r.members.Load() }

// Len returns the number of members in the room on this node.
func (r *room) Len() int { return len(r.Members()) }

// Sorted returns the members sorted by name, for display.
func (r *room) Sorted() []*Member {
	s := append([]*Member(nil), r.Members()...)
	sort.Slice(s, func(i, j int) bool { return s[i].Key < s[j].Key })
	return s
}

// join adds m, once its login reply has been sent (a classic client reads
// the first datagram after its login as the reply, so no event may reach
// it before). It returns the members who were in the room before, the ones
// to tell about the join, and false if m was in it already.
//
// The snapshot is copy-on-write without the cost of a copy per join: join
// appends in place, which readers cannot see, because they hold slice
// headers no longer than before and nothing below their length changes;
// only when the array is full does append copy it (doubling, so joining n
// members costs O(n) in all, not O(n²)). leave copies, so no element a
// reader may hold ever changes.
func (r *room) join(m *Member) (others []*Member, ok bool) {
	others, ok, _ = r.add(m, 0)
	return others, ok
}

// add is join, recording that m's membership began after event base; gone
// reports that the room was removed (a join that finds it so must open the
// room again).
func (r *room) add(m *Member, base uint64) (others []*Member, ok, gone bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set.removed {
		return nil, false, true
	}
	if !m.enter(r, base) {
		return nil, false, false
	}
	others = r.Members()
	s := append(others, m)
	r.members.Store(&s)
	return others, true, false
}

// leave removes m and reports whether it was there. It returns the members
// before the removal, so that m too can be told of its leave.
func (r *room) leave(m *Member) (before []*Member, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	before = r.Members()
	if !m.exit(r) {
		return before, false
	}
	out := make([]*Member, 0, cap(before))
	for _, o := range before {
		if o != m {
			out = append(out, o)
		}
	}
	r.members.Store(&out)
	return before, true
}

// deliver hands the event sequenced as seq to the local fan-out, in
// sequence order: an event whose predecessor is still between the log and
// here waits in early until it has gone. The log is never asked under
// feed.mu, and the fan-out is fed only under it (lock order: feed.mu ->
// fanout.mu).
func (r *room) deliver(seq uint64, e Event, to Delivery) {
	r.feed.mu.Lock()
	defer r.feed.mu.Unlock()
	if seq != r.feed.next {
		if seq < r.feed.next {
			return // delivered already: a shared log hands this node its own events too
		}
		if r.feed.early == nil {
			r.feed.early = make(map[uint64]Event)
		}
		if _, dup := r.feed.early[seq]; !dup {
			r.feed.early[seq] = e
		}
		return
	}
	to.Publish(e)
	r.feed.next++
	for len(r.feed.early) > 0 {
		e, ok := r.feed.early[r.feed.next]
		if !ok {
			break
		}
		delete(r.feed.early, r.feed.next)
		to.Publish(e)
		r.feed.next++
	}
}

// undelivered reports whether the event sequenced as seq has not reached
// the local outboxes yet (a hint: deliver decides under the lock).
func (r *room) undelivered(seq uint64) bool {
	r.feed.mu.Lock()
	defer r.feed.mu.Unlock()
	if seq < r.feed.next {
		return false
	}
	_, early := r.feed.early[seq]
	return !early
}

// memLogs is RoomLogs in memory: each room's history lives and dies with
// the process (a new epoch at every start).
type memLogs struct{ ring int }

func (l memLogs) Open(string) (RoomLog, error) { return newMemLog(l.ring), nil }

// InProcess reports true: memory rooms never wait (InProcess).
func (memLogs) InProcess() bool { return true }

// memRingStart is the ring a memLog allocates with its first event: it
// doubles as events come, up to its limit, so that 10,000 quiet rooms (or
// 100,000 inboxes that never get a message) cost little.
const memRingStart = 16

// memLog is RoomLog in memory: every event gets the next seq, is encoded
// once, and is kept in a bounded ring so that clients can repair gaps and
// joiners get a backlog.
type memLog struct {
	epoch string // random per start: a new epoch means history was lost

	limit int // the ring's largest size: how many events are kept

	mu      sync.Mutex // protects seq, ring, lines and scratch
	seq     uint64     // the latest event's seq; 0 before the first
	ring    [][]byte   // ring[seq % len(ring)]: the event's line, shared, never modified; grows to limit
	lines   slab       // where the events' lines are kept
	scratch []byte     // where an event is encoded before it is copied to lines
}

func newMemLog(ringSize int) *memLog {
	return &memLog{epoch: randomHex(4), limit: ringSize} // the ring comes with the first event
}

// growLocked doubles the ring (up to limit) when the next event would
// overwrite one that a larger ring would keep. l.mu must be held.
func (l *memLog) growLocked() {
	if l.ring == nil {
		l.ring = make([][]byte, min(l.limit, memRingStart))
		return
	}
	n := uint64(len(l.ring))
	if l.seq < n || len(l.ring) >= l.limit {
		return
	}
	bigger := make([][]byte, min(2*len(l.ring), l.limit))
	for seq := l.seq - n + 1; seq <= l.seq; seq++ {
		bigger[seq%uint64(len(bigger))] = l.ring[seq%n]
	}
	l.ring = bigger
}

// Append sequences f, encodes it once and keeps the line in the ring. In
// steady state it allocates nothing: the line is carved from a slab.
func (l *memLog) Append(f wire.Frame) (uint64, []byte, error) {
	f.Epoch = l.epoch
	l.mu.Lock()
	defer l.mu.Unlock()
	l.growLocked()
	l.seq++
	f.Seq = l.seq
	l.scratch = wire.AppendFrame(l.scratch[:0], &f)
	line := l.lines.copy(l.scratch)
	l.ring[l.seq%uint64(len(l.ring))] = line
	return l.seq, line, nil
}

func (l *memLog) Epoch() string { return l.epoch }

func (l *memLog) Latest() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// oldestLocked is the oldest seq still in the ring. l.mu must be held.
func (l *memLog) oldestLocked() uint64 {
	if n := uint64(len(l.ring)); l.seq > n {
		return l.seq - n + 1
	}
	return 1
}

func (l *memLog) Range(from, to uint64) (lines [][]byte, lostFrom, lostTo uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if from == 0 {
		from = 1
	}
	if to > l.seq {
		to = l.seq
	}
	if from > to {
		return nil, 0, 0
	}
	if oldest := l.oldestLocked(); from < oldest {
		lostFrom, lostTo = from, min(to, oldest-1)
		from = oldest
	}
	for seq := from; seq <= to; seq++ {
		lines = append(lines, l.ring[seq%uint64(len(l.ring))])
	}
	return lines, lostFrom, lostTo
}

// Backlog encodes the events anew: the history flag makes them different
// bytes.
func (l *memLog) Backlog(n int, upto uint64) [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	upto = min(upto, l.seq)
	from := l.oldestLocked()
	if upto >= uint64(n) && upto-uint64(n)+1 > from {
		from = upto - uint64(n) + 1
	}
	var lines [][]byte
	for seq := from; seq <= upto && n > 0; seq++ {
		// The ring keeps only the encoded event: decode it again (its
		// strings alias the line, which never changes) to mark it.
		var f wire.Frame
		if !wire.DecodeFrameInPlace(l.ring[seq%uint64(len(l.ring))], &f) {
			continue // never: the line is wire.AppendFrame's (FuzzAppendFrame decodes what it encodes)
		}
		f.History = true
		lines = append(lines, wire.AppendFrame(nil, &f))
	}
	return lines
}

// memDirectory is NameDirectory in memory: the names of one node.
type memDirectory struct {
	mu     sync.Mutex        // protects owners
	owners map[string]string // compare key -> owner
}

func newMemDirectory() *memDirectory { return &memDirectory{owners: make(map[string]string)} }

// InProcess reports true: memory names never wait (InProcess).
func (*memDirectory) InProcess() bool { return true }

func (d *memDirectory) Claim(key, owner string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur, ok := d.owners[key]; ok && cur != owner {
		return ErrNameTaken
	}
	d.owners[key] = owner
	return nil
}

func (d *memDirectory) Release(key, owner string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.owners[key] == owner {
		delete(d.owners, key)
	}
}

func (d *memDirectory) Lookup(key string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	owner, ok := d.owners[key]
	return owner, ok
}

// randomHex returns n random bytes from crypto/rand, in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("relay: crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}
