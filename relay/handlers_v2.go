package relay

import (
	"crypto/rand"
	"encoding/base64"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"

	"go.uber.org/zap"
)

// v2State is a v2 session's memory of the client message ids it has
// broadcast, so that a retransmitted chat is acknowledged, never broadcast
// twice. Ids run 1, 2, 3… but arrive in any order (a lost one is
// retransmitted while later ones go through), so the memory is a floor
// (every id up to it was broadcast) plus the ids above it, as TCP keeps
// its receive window.
//
// It is sized lazily: a session that never chatted holds no map and no
// ring (an idle member of a 100,000-member room must cost little), and
// the ring of recent ids' seqs grows with use up to v2SeqMemory slots.
type v2State struct {
	mu    sync.Mutex          // protects the fields below
	floor uint64              // every id <= floor was broadcast
	above map[uint64]struct{} // ids > floor that were broadcast; nil while none
	// arrived holds the ids put in above, in the order they came, some
	// since folded into the floor: the oldest is evicted from its front in
	// amortized O(1) (a scan of above per chat would let one missing id
	// cost every later chat thousands of map steps).
	arrived []uint64
	// recent holds recent ids' seqs, for acks: id at index id mod its
	// length, a power of two that doubles with use up to v2SeqMemory
	// (one slot per id, no hashing: it is on every chat's path); nil
	// before the first.
	recent []idSeq
	kept   int // ids remembered, up to v2SeqMemory

	base atomic.Uint64 // the room seq the session began at (its welcome's)
}

const (
	// v2SeqMemory is how many recent ids' seqs a session remembers (a
	// power of two); an older duplicate is acknowledged without its seq.
	v2SeqMemory = 1024
	// v2MaxAbove bounds the ids kept above the floor. A hole (an id that
	// never arrived) keeps them from folding into the floor; a client
	// retransmits it every 2 s at most, so this is never reached in
	// practice. If it is, the oldest are forgotten: a very late copy of one
	// would be broadcast again rather than a message lost.
	v2MaxAbove = 8192
)

func newV2State() *v2State { return &v2State{} }

// idSeq is one slot of v2State.recent.
type idSeq struct{ id, seq uint64 }

// seen reports whether id was broadcast, and as which seq if that is still
// remembered (0 otherwise).
func (v *v2State) seen(id uint64) (uint64, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if id > v.floor {
		if _, above := v.above[id]; !above {
			return 0, false
		}
	}
	if n := uint64(len(v.recent)); n > 0 {
		if e := v.recent[id&(n-1)]; e.id == id {
			return e.seq, true
		}
	}
	return 0, true
}

// remember records that id was broadcast as seq.
func (v *v2State) remember(id, seq uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.kept < v2SeqMemory {
		v.kept++
		if v.kept > len(v.recent) {
			v.growRecent()
		}
	}
	v.recent[id&uint64(len(v.recent)-1)] = idSeq{id, seq}
	if id <= v.floor {
		return
	}
	if id == v.floor+1 && len(v.above) == 0 {
		v.floor++ // in order: nothing above to fold
		return
	}
	if v.above == nil {
		v.above = make(map[uint64]struct{})
	}
	v.above[id] = struct{}{}
	v.arrived = append(v.arrived, id)
	for {
		if _, ok := v.above[v.floor+1]; !ok {
			break
		}
		delete(v.above, v.floor+1)
		v.floor++
	}
	switch {
	case len(v.above) == 0:
		v.arrived = v.arrived[:0]
	case len(v.above) > v2MaxAbove:
		// Forget the id that came first and is still above the floor.
		for len(v.arrived) > 0 {
			a := v.arrived[0]
			v.arrived = v.arrived[1:]
			if _, ok := v.above[a]; ok {
				delete(v.above, a)
				break
			}
		}
	}
	if len(v.arrived) > 2*len(v.above)+64 {
		// Mostly folded ids: keep those still above, in order.
		kept := make([]uint64, 0, 2*len(v.above)+64)
		for _, a := range v.arrived {
			if _, ok := v.above[a]; ok {
				kept = append(kept, a)
			}
		}
		v.arrived = kept
	}
}

// growRecent doubles recent (16 slots at first), keeping what it holds.
func (v *v2State) growRecent() {
	grown := make([]idSeq, max(16, 2*len(v.recent)))
	n := uint64(len(grown))
	for _, e := range v.recent {
		if e.id != 0 {
			grown[e.id&(n-1)] = e
		}
	}
	v.recent = grown
}

// minV2Request is the padding the spec asks clients for: a retry must not
// be larger than its request, and a cookie retry is about 80 bytes.
const minV2Request = 256

// v2Op is one row of the v2 frame table; as for classic, the checks live
// in the fields.
type v2Op struct {
	handle      func(s *Server, g *datagram, f *wire.Frame, m *Member, r *room, now time.Time)
	needsMember bool // the sender's address must hold a v2 session
	// inRoom: the member must be in the frame's room (or it is its inbox,
	// "@"), which the handler gets as r; otherwise the frame is answered
	// error not_in_room. Without it, r is the room if the member is in it,
	// else nil.
	inRoom bool
	// minRev: the member's revision must be at least this; a frame its
	// revision does not know is dropped as unknown (DropUnknownVerb), as
	// a relay of that revision would, and never answered with a frame the
	// client cannot read.
	minRev uint32
}

var v2Ops = map[string]v2Op{
	wire.FrameHello:  {handle: (*Server).v2Hello},
	wire.FrameResume: {handle: (*Server).v2Resume},
	wire.FrameChat:   {handle: (*Server).v2Chat, needsMember: true, inRoom: true},
	wire.FramePing:   {handle: (*Server).v2Ping, needsMember: true, inRoom: true},
	wire.FrameRepair: {handle: (*Server).v2Repair, needsMember: true, inRoom: true},
	wire.FrameWho:    {handle: (*Server).v2Who, needsMember: true},
	wire.FrameQuit:   {handle: (*Server).v2Quit, needsMember: true},
	// revision 1
	wire.FrameJoin:    {handle: (*Server).v2Join, needsMember: true, minRev: 1},
	wire.FramePart:    {handle: (*Server).v2Part, needsMember: true},
	wire.FrameRooms:   {handle: (*Server).v2Rooms, needsMember: true},
	wire.FrameMsg:     {handle: (*Server).v2Msg, needsMember: true},
	wire.FrameHistory: {handle: (*Server).v2History, needsMember: true, minRev: 1, inRoom: true},
}

// dispatchV2 handles every frame of a v2 datagram in order. Garbage, and
// frames from addresses without a session, are counted and never answered.
func (s *Server) dispatchV2(g *datagram, now time.Time) {
	// The frames' strings alias the buffer, which lives until the handler
	// returns: whatever is kept is copied (Registry.Join, room.append,
	// chatLine). The frames themselves are pooled.
	fp := framePool.Get().(*[]wire.Frame)
	frames, err := wire.DecodeV2InPlace((*fp)[:0], (*g.buf)[:g.n])
	defer putFrames(fp, frames)
	if err != nil {
		s.obs.DatagramDropped(dropReason(err))
		return
	}
	g.repairBudget = maxRepairPerDatagram
	for i := range frames {
		f := &frames[i]
		op, ok := v2Ops[f.T]
		if !ok {
			s.obs.DatagramDropped(DropUnknownVerb)
			continue
		}
		var (
			m *Member
			r *room
		)
		if op.needsMember {
			m = s.reg.Lookup(g.from)
			if m == nil || m.Proto != ProtoV2 {
				if f.T == wire.FrameQuit && s.reg.RecentlyQuit(g.from, now) {
					s.replyV2(g, &wire.Frame{T: wire.FrameBye, Room: wire.RoomMain})
					continue
				}
				s.obs.DatagramDropped(DropNotLoggedIn)
				continue
			}
			m.touch(now)
			if m.rev.Load() < op.minRev {
				s.obs.DatagramDropped(DropUnknownVerb)
				continue
			}
			if r = m.roomFor(f.Room); r == nil && op.inRoom {
				s.sendV2(m, &wire.Frame{T: wire.FrameError, Room: f.Room, ID: f.ID, Code: wire.CodeNotInRoom, Reason: s.words().noRoom})
				continue
			}
		}
		op.handle(s, g, f, m, r, now)
	}
}

// framePool holds the frame slices dispatchV2 decodes into.
var framePool = sync.Pool{New: func() any { return new([]wire.Frame) }}

// putFrames returns a frame slice to framePool, without the strings that
// alias a datagram buffer.
func putFrames(fp *[]wire.Frame, frames []wire.Frame) {
	clear(frames)
	*fp = frames[:0]
	framePool.Put(fp)
}

// validated checks a hello or resume for a cookie proving the address. If
// it has none, the sender gets one retry, only if no larger than its
// request (a spoofed hello must not be amplified), and false is returned.
func (s *Server) validated(g *datagram, f *wire.Frame, now time.Time) bool {
	if f.Cookie != "" && s.cookies.valid(f.Cookie, g.from, now) {
		return true
	}
	reply := wire.EncodeV2(&wire.Frame{T: wire.FrameRetry, Room: wire.RoomMain, Cookie: s.cookies.make(g.from, now)})
	if len(reply) > g.n {
		s.obs.DatagramDropped(DropUnvalidated)
		return false
	}
	s.out.Reply(g.from, g.local, reply)
	return false
}

func (s *Server) v2Hello(g *datagram, f *wire.Frame, _ *Member, _ *room, now time.Time) {
	if !s.validated(g, f, now) {
		return
	}
	if f.Room != s.main.name {
		s.replyV2(g, &wire.Frame{T: wire.FrameRefused, Room: f.Room, Code: wire.CodeNotInRoom, Reason: s.words().noRoom})
		return
	}
	m, repeat, err := s.join(f.Name, ProtoV2, newToken(), g, now)
	if err != nil {
		reason, result := s.words().refusal(err)
		s.obs.Login(result)
		s.replyV2(g, &wire.Frame{T: wire.FrameRefused, Room: wire.RoomMain, Code: result, Reason: reason})
		return
	}
	if repeat {
		// The welcome was lost: the same welcome again (the seq at which
		// the session began, so the client repairs what came after) and
		// the same backlog.
		s.obs.Login(LoginRepeat)
		base := m.v2.base.Load()
		s.welcome(m, base)
		s.out.SendFrames(m, s.main.log.Backlog(s.cfg.Backlog, base))
		s.welcomeInbox(m)
		return
	}
	m.rev.Store(uint32(min(f.Rev, wire.Rev)))
	if m.rev.Load() >= 1 {
		// The inbox is opened before the welcome: once the name is known,
		// a direct message may come for it.
		log, err := s.cfg.Logs.Open(wire.Inbox + m.ID)
		if err != nil {
			s.log.Warn("inbox log failed to open", zap.String("name", m.Name), zap.Error(err))
			m.rev.Store(0)
		} else {
			m.inbox.Store(newInbox(log, m))
		}
	}
	base := s.main.log.Latest()
	m.v2.base.Store(base)
	backlog := s.main.log.Backlog(s.cfg.Backlog, base) // read before the feed lock: a log may be remote
	// The welcome, the backlog and the inbox's welcome are queued as m
	// enters main, in one step (enter): once m has its welcome it is in
	// main: a login right after it is announced to m, live, and that
	// member has m's join in its backlog, as history. Events of main between
	// base and the entry reach m by repair, as after a lost datagram.
	welcome, inboxW := s.welcomeFrame(m, base), []byte(nil)
	if in := m.inbox.Load(); in != nil {
		inboxW = inboxWelcome(in)
	}
	others, _ := s.enter(s.main, m, func() {
		s.out.Queue(m, welcome)
		s.out.QueueFrames(m, backlog)
		if inboxW != nil {
			s.out.Queue(m, inboxW)
		}
	})
	s.obs.Login(LoginOK)
	s.log.Info("login", zap.String("name", m.Name), zap.Stringer("addr", m.Addr()), zap.String("proto", m.Proto))
	// others is a shared snapshot: never append to it in place.
	to := append(others[:len(others):len(others)], m) // the joiner gets its own join, in room order
	s.announce(s.main, to, m, wire.FrameJoin, "", classicLine(s.words().Join, m.Name), KindJoin)
	s.saveSession(m)
}

// welcome tells m it is in, as of room event seq.
func (s *Server) welcome(m *Member, seq uint64) { s.out.Send(m, s.welcomeFrame(m, seq)) }

// welcomeFrame is welcome's datagram.
func (s *Server) welcomeFrame(m *Member, seq uint64) []byte {
	rev := uint64(m.rev.Load())
	return encodeV2Reply(&wire.Frame{T: wire.FrameWelcome, Room: s.main.name, Name: m.Name, Token: m.Token, Epoch: s.main.log.Epoch(), Seq: seq, Rev: rev})
}

// welcomeInbox tells a revision-1 member where its inbox stands.
func (s *Server) welcomeInbox(m *Member) {
	if in := m.inbox.Load(); in != nil {
		s.out.Send(m, inboxWelcome(in))
	}
}

// inboxWelcome is welcomeInbox's datagram.
func inboxWelcome(in *room) []byte {
	return encodeV2Reply(&wire.Frame{T: wire.FrameWelcome, Room: wire.Inbox, Epoch: in.log.Epoch(), Seq: in.log.Latest()})
}

func (s *Server) v2Resume(g *datagram, f *wire.Frame, _ *Member, _ *room, now time.Time) {
	if !s.validated(g, f, now) {
		return
	}
	m := s.reg.ByToken(f.Token)
	adopted := false
	if m == nil {
		var handled bool
		if m, handled = s.adopt(g, f, now); handled {
			return
		}
		adopted = m != nil
	}
	if m == nil {
		s.obs.Login(LoginUnknownSession)
		s.replyV2(g, &wire.Frame{T: wire.FrameRefused, Room: wire.RoomMain, Code: LoginUnknownSession, Reason: s.words().unknownSession})
		return
	}
	from := m.Addr()
	if from.Addr() != g.from.Addr() { // a banned address cannot take a session over
		if b, banned := s.mod().banned(m.Key, g.from.Addr(), now); banned {
			s.obs.Login(LoginBanned)
			s.replyV2(g, &wire.Frame{T: wire.FrameRefused, Room: wire.RoomMain, Code: LoginBanned, Reason: s.modWords().bannedReason(b, now)})
			return
		}
	}
	if err := s.reg.Move(m, g.from, g.local); err != nil {
		reason, result := s.words().refusal(err)
		s.obs.Login(result)
		s.replyV2(g, &wire.Frame{T: wire.FrameRefused, Room: wire.RoomMain, Code: result, Reason: reason})
		return
	}
	m.touch(now)
	s.obs.Login(LoginResumed)
	if from != g.from {
		s.log.Info("session resumed", zap.String("name", m.Name), zap.Stringer("from", from), zap.Stringer("to", g.from))
	}
	if from != g.from || adopted {
		s.saveSession(m)
	}
	latest := s.main.log.Latest()
	s.welcome(m, latest)
	if m.roomFor(wire.RoomMain) != nil {
		s.repair(g, s.main, m, f.Last+1, latest)
	}
	// Revision 1: where every other room and the inbox stand; the client
	// repairs each from its own last.
	for _, r := range m.roomList() {
		if r != s.main {
			s.welcomeRoom(m, r, r.log.Latest())
		}
	}
	s.welcomeInbox(m)
}

func (s *Server) v2Chat(g *datagram, f *wire.Frame, m *Member, r *room, now time.Time) {
	if r == m.inbox.Load() {
		s.sendV2(m, &wire.Frame{T: wire.FrameError, Room: f.Room, ID: f.ID, Code: wire.CodeNotInRoom, Reason: s.words().noRoom})
		return
	}
	if !s.checkChat(m, r.name, r.key, f, now) {
		return
	}
	ev := &wire.Frame{T: wire.FrameChat, From: m.Name, ID: f.ID, Text: f.Text}
	if s.broadcastChat(r, ev, s.chatLine(m.Name, f.Text), m, f.ID) {
		m.v2.remember(f.ID, ev.Seq)
		return
	}
	// Not stored: unacknowledged, so the client retransmits it; it is told
	// why once per chat, and the drop is counted.
	s.obs.DatagramDropped(DropUnavailable)
	s.sendV2(m, &wire.Frame{T: wire.FrameError, Room: r.name, ID: f.ID, Code: wire.CodeUnavailable, Reason: s.words().unavailable})
}

// checkChat runs the checks a chat and a direct message share: a well-formed
// frame, not a duplicate (acknowledged again), within flood limits, no
// control characters, not oversize. A refusal is answered in room (the
// frame's room, or the inbox) with the frame's id; it reports false then.
//
// roomKey is the room's compare key for mutes ("" for a direct message:
// relay-wide mutes only).
func (s *Server) checkChat(m *Member, room, roomKey string, f *wire.Frame, now time.Time) bool {
	refuse := func(code, reason string) {
		s.sendV2(m, &wire.Frame{T: wire.FrameError, Room: room, ID: f.ID, Code: code, Reason: reason})
	}
	if f.ID == 0 || f.Text == "" {
		s.obs.DatagramDropped(DropMalformed)
		refuse("malformed", s.words().malformed)
		return false
	}
	if seq, dup := m.v2.seen(f.ID); dup {
		s.obs.DatagramDropped(DropDuplicate)
		s.sendV2(m, &wire.Frame{T: wire.FrameAck, Room: room, ID: f.ID, Seq: seq})
		return false
	}
	if v := s.flood.AllowChat(m.Key); !v.Allowed() {
		s.floodDrop(v, "session", m.Name)
		s.throttle(m, v, f.ID, now)
		return false
	}
	if reason, muted := s.mutedIn(m, roomKey, now); muted {
		s.obs.DatagramDropped(DropMuted)
		refuse(wire.CodeMuted, reason)
		return false
	}
	if wire.CheckText(f.Text) != nil {
		s.obs.DatagramDropped(DropControlChars)
		refuse("control_chars", s.words().refusedControl)
		return false
	}
	if len(f.Text) > s.cfg.MaxDatagram {
		s.obs.DatagramDropped(DropOversize)
		refuse("oversize", s.words().malformed)
		return false
	}
	return true
}

func (s *Server) v2Ping(g *datagram, f *wire.Frame, m *Member, r *room, _ time.Time) {
	latest := r.log.Latest()
	if f.Last < latest {
		// Tail loss: resend what the client lacks after its last, a little
		// per ping. A client with a gap further back also holds later
		// events, so resending all would repeat them every heartbeat; it
		// asks for its gaps with repair.
		s.repair(g, r, m, f.Last+1, min(latest, f.Last+maxPingRepair))
	}
	s.sendV2(m, &wire.Frame{T: wire.FramePong, Room: r.name, Seq: latest, Epoch: r.log.Epoch()})
}

// maxRepair bounds the events one repair frame is answered with,
// maxPingRepair those a heartbeat is, and maxRepairPerDatagram those all
// the frames of one datagram are: about 30 datagrams back for one in.
const (
	maxRepair            = 1024
	maxPingRepair        = 64
	maxRepairPerDatagram = 256
)

func (s *Server) v2Repair(g *datagram, f *wire.Frame, m *Member, r *room, _ time.Time) {
	if f.FromSeq == 0 || f.ToSeq < f.FromSeq {
		s.obs.DatagramDropped(DropMalformed)
		return
	}
	s.repair(g, r, m, f.FromSeq, min(f.ToSeq, f.FromSeq+maxRepair-1))
}

// repair sends m the events from..to still in the ring, and a missed frame
// for those that are not, so nothing is skipped silently. It resends at
// most the datagram's remaining repair budget: a client far behind asks
// again for the rest, instead of one request flooding its socket (where
// the very events it lacks would be dropped, and asked for again, ever
// more).
func (s *Server) repair(g *datagram, r *room, m *Member, from, to uint64) {
	if g.repairBudget <= 0 {
		return
	}
	if to-from+1 > uint64(g.repairBudget) {
		to = from + uint64(g.repairBudget) - 1
	}
	g.repairBudget -= int(to - from + 1)
	lines, lostFrom, lostTo := r.log.Range(from, to)
	if lostTo != 0 {
		s.sendV2(m, &wire.Frame{T: wire.FrameMissed, Room: r.name, Epoch: r.log.Epoch(), FromSeq: lostFrom, ToSeq: lostTo, Count: lostTo - lostFrom + 1})
	}
	s.out.SendFrames(m, lines)
}

// v2Who lists a room's members: a room the member is in, or any room
// without a key.
func (s *Server) v2Who(_ *datagram, f *wire.Frame, m *Member, r *room, _ time.Time) {
	if r == nil {
		if _, key, err := wire.CanonicalRoom(f.Room); err == nil {
			r = s.rooms.get(key)
		}
		if r != nil && r.settings().key != "" {
			r = nil // a locked room shows its members to its members only
		}
	}
	if r == nil || r == m.inbox.Load() {
		s.sendV2(m, &wire.Frame{T: wire.FrameError, Room: f.Room, Code: wire.CodeNotInRoom, Reason: s.words().noRoom})
		return
	}
	var (
		names []string
		size  int
	)
	flush := func(more bool) {
		s.sendV2(m, &wire.Frame{T: wire.FrameMembers, Room: r.name, Names: names, More: more})
		names, size = nil, 0
	}
	all := make([]string, 0, r.Len())
	for _, o := range r.Sorted() {
		all = append(all, o.Name)
	}
	if s.cfg.Cluster != nil { // and the members on other relays
		all = append(all, s.remoteIn(r.key)...)
		sort.Strings(all)
	}
	for _, name := range all {
		if size+len(name)+3 > s.cfg.SendBudget-96 && len(names) > 0 {
			flush(true)
		}
		names = append(names, name)
		size += len(name) + 3
	}
	flush(false)
}

func (s *Server) v2Quit(g *datagram, _ *wire.Frame, m *Member, _ *room, now time.Time) {
	s.sendV2(m, &wire.Frame{T: wire.FrameBye, Room: s.main.name})
	s.quit(m, now)
}

// quit removes m because it asked to, and tells the room, once, however
// many removals race.
func (s *Server) quit(m *Member, now time.Time) {
	if !s.remove(m, now) {
		return
	}
	s.log.Info("quit", zap.String("name", m.Name), zap.Stringer("addr", m.Addr()), zap.String("proto", m.Proto))
	s.announceGone(m, wire.FrameLeave, "quit", classicLine(s.words().Leave, m.Name), KindLeave)
}

// remove takes m out of the registry and out of its rooms, and forgets its
// flood state. It reports whether this call removed it (removals can race:
// a quit, a kick, an eviction), so that exactly one caller tells the rooms
// (announceGone).
func (s *Server) remove(m *Member, now time.Time) bool {
	if !s.reg.Leave(m, now) {
		return false
	}
	s.forgetSession(m)
	m.left = m.roomList()
	for _, r := range m.left {
		r.leave(m)
	}
	s.flood.ForgetSession(m.Key)
	return true
}

// announceGone tells every room m was in when it was removed that it left
// (t: leave or timeout), then drops the rooms left empty. Only the caller
// whose remove returned true calls it.
func (s *Server) announceGone(m *Member, t, reason string, classic []byte, kind string) {
	for _, r := range m.left {
		s.announce(r, r.Members(), m, t, reason, classic, kind)
		s.rooms.dropIfEmpty(r)
	}
}

// replyV2 answers the sender of g, member or not, with one v2 datagram.
func (s *Server) replyV2(g *datagram, f *wire.Frame) {
	s.out.Reply(g.from, g.local, encodeV2Reply(f))
}

// sendV2 sends one frame to m.
func (s *Server) sendV2(m *Member, f *wire.Frame) { s.out.Send(m, encodeV2Reply(f)) }

// newToken returns an unguessable session token: 128 bits from crypto/rand.
func newToken() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("relay: crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}
