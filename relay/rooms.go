package relay

import (
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// RoomSettings configures a room that exists whether or not anyone is in
// it (config file `rooms:`, or `relay admin topic`).
type RoomSettings struct {
	Name  string // the room's name (wire.CanonicalRoom)
	Topic string // shown on join; "" for none
	Limit int    // members at most; 0 for no limit but the relay's
	Key   string // needed to join; "" for none. Plaintext over UDP.
}

// roomSet is the rooms of this node, by compare key. A room is created by
// its first join and removed when its last member leaves, unless it is
// main or configured.
type roomSet struct {
	mu     sync.Mutex       // protects byKey; taken before room.mu
	byKey  map[string]*room // compare key -> room
	onSize func(n int)      // told the number of rooms after each change, under mu
}

// settings is a room's configuration, guarded by room.mu.
type settings struct {
	topic      string
	limit      int
	key        string
	configured bool // kept while empty
	removed    bool // taken out of the set: a join that finds it must look again
}

// settings returns a copy of r's settings.
func (r *room) settings() settings {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set
}

// get returns the room with name's key, or nil.
func (rs *roomSet) get(key string) *room {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.byKey[key]
}

// all returns the rooms sorted by name.
func (rs *roomSet) all() []*room {
	rs.mu.Lock()
	list := make([]*room, 0, len(rs.byKey))
	for _, r := range rs.byKey {
		list = append(list, r)
	}
	rs.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].key < list[j].key })
	return list
}

// len returns the number of rooms.
func (rs *roomSet) len() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.byKey)
}

// open returns the room whose compare key is key, creating it with open
// unless max rooms exist already (errRoomsFull). open is called under
// rs.mu: it MUST NOT block for long (the in-memory log does not; a remote
// log opens its room before, see Server.room).
func (rs *roomSet) open(key string, max int, open func() (*room, error)) (*room, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r := rs.byKey[key]; r != nil {
		return r, nil
	}
	if len(rs.byKey) >= max {
		return nil, errRoomsFull
	}
	r, err := open()
	if err != nil {
		return nil, err
	}
	rs.byKey[key] = r
	rs.onSize(len(rs.byKey))
	return r, nil
}

// dropIfEmpty removes r if nobody is in it and it is neither main nor
// configured.
func (rs *roomSet) dropIfEmpty(r *room) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set.configured || r.name == wire.RoomMain || len(r.Members()) > 0 || r.set.removed {
		return
	}
	r.set.removed = true
	delete(rs.byKey, r.key)
	rs.onSize(len(rs.byKey))
	if r.unfollow != nil {
		r.unfollow() // returns at once: it waits for no call in progress
		r.unfollow = nil
	}
}

// roomFor resolves the room a member's frame names: its inbox for
// wire.Inbox, else one of its rooms by name (exact, then by compare key).
// It returns nil if the member is not in it.
func (m *Member) roomFor(name string) *room {
	if name == wire.Inbox {
		return m.inbox.Load()
	}
	if name == "" {
		name = wire.RoomMain
	}
	m.mu.Lock()
	for _, ms := range m.rooms {
		if ms.r.name == name {
			m.mu.Unlock()
			return ms.r
		}
	}
	m.mu.Unlock()
	_, key, err := wire.CanonicalRoom(name)
	if err != nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ms := range m.rooms {
		if ms.r.key == key {
			return ms.r
		}
	}
	return nil
}

// errRoomsFull is the join refusal when --max-rooms rooms exist.
var errRoomsFull = wireErr(wire.CodeRoomsFull)

// wireErr is an error that carries a wire code.
type wireErr string

func (e wireErr) Error() string { return "relay: " + string(e) }

// openRoom returns the room called name, creating it if need be.
func (s *Server) openRoom(name string) (*room, error) {
	display, key, err := wire.CanonicalRoom(name)
	if err != nil {
		return nil, wireErr(wire.CodeRoomInvalid)
	}
	return s.rooms.open(key, s.cfg.MaxRooms, func() (*room, error) {
		log, err := s.cfg.Logs.Open(display)
		if err != nil {
			return nil, err
		}
		r := newRoom(display, log)
		r.key = key
		if s.serving.Load() {
			s.follow(r) // else ServeGroup follows it
		}
		return r, nil
	})
}

// v2Join joins a room: welcome, backlog, then the join event (to the
// joiner too, as on login), or an error with a code.
func (s *Server) v2Join(g *datagram, f *wire.Frame, m *Member, _ *room, now time.Time) {
	refuse := func(code, reason string) {
		s.sendV2(m, &wire.Frame{T: wire.FrameError, Room: f.Room, Code: code, Reason: reason})
	}
	if r := m.roomFor(f.Room); r != nil && r != m.inbox.Load() { // a repeat: the welcome was lost
		base, _ := m.baseIn(r)
		s.welcomeRoom(m, r, base)
		s.out.SendFrames(m, r.log.Backlog(s.cfg.Backlog, base))
		return
	}
	if m.roomCount() >= s.cfg.MaxRoomsPerMember { // before a room is opened for nothing
		refuse(wire.CodeTooManyRooms, s.words().joinRefusal(wire.CodeTooManyRooms))
		return
	}
	for range 2 { // a room removed as we joined it is looked up once more
		r, err := s.openRoom(f.Room)
		if err != nil {
			code := wire.CodeRoomInvalid
			if e, ok := err.(wireErr); ok {
				code = string(e)
			} else {
				s.log.Warn("room log failed to open", zap.String("room", f.Room), zap.Error(err))
			}
			refuse(code, s.words().joinRefusal(code))
			return
		}
		if code, reason, ok := s.admitRoom(r, f.Key); !ok {
			s.rooms.dropIfEmpty(r) // before the answer: a join after it finds the room gone
			refuse(code, reason)
			return
		}
		base := r.log.Latest()
		others, ok, gone := r.add(m, base)
		if gone {
			continue
		}
		if !ok { // joined meanwhile by another frame of this datagram
			return
		}
		s.welcomeRoom(m, r, base)
		s.out.SendFrames(m, r.log.Backlog(s.cfg.Backlog, base))
		to := append(others[:len(others):len(others)], m) // the joiner gets its own join
		s.announce(r, to, m, wire.FrameJoin, "", classicLine(s.words().Join, m.Name), KindJoin)
		s.saveSession(m)
		return
	}
}

// admitRoom checks a join against the room's key and member limit. (The
// relay-wide bans and mutes are checked at login and per chat.)
func (s *Server) admitRoom(r *room, key string) (code, reason string, ok bool) {
	set := r.settings()
	if set.key != "" && key != set.key {
		return wire.CodeBadKey, s.words().joinRefusal(wire.CodeBadKey), false
	}
	if set.limit > 0 && r.Len() >= set.limit {
		return wire.CodeRoomFull, s.words().joinRefusal(wire.CodeRoomFull), false
	}
	return "", "", true
}

// welcomeRoom tells m it is in r, as of event seq.
func (s *Server) welcomeRoom(m *Member, r *room, seq uint64) {
	s.sendV2(m, &wire.Frame{T: wire.FrameWelcome, Room: r.name, Epoch: r.log.Epoch(), Seq: seq, Topic: r.settings().topic})
}

// v2Part leaves a room: parted to the leaver (again for a repeat), leave to
// the others.
func (s *Server) v2Part(g *datagram, f *wire.Frame, m *Member, r *room, now time.Time) {
	if r == nil || r == m.inbox.Load() {
		s.sendV2(m, &wire.Frame{T: wire.FrameParted, Room: f.Room})
		return
	}
	_, ok := r.leave(m)
	s.sendV2(m, &wire.Frame{T: wire.FrameParted, Room: r.name})
	if !ok {
		return
	}
	s.log.Debug("part", zap.String("name", m.Name), zap.String("room", r.name))
	s.announce(r, r.Members(), m, wire.FrameLeave, "part", classicLine(s.words().Leave, m.Name), KindLeave)
	s.rooms.dropIfEmpty(r)
	s.saveSession(m)
}

// v2Rooms lists the rooms, one room frame each, sorted by name.
func (s *Server) v2Rooms(_ *datagram, _ *wire.Frame, m *Member, _ *room, _ time.Time) {
	rooms := s.Rooms()
	lines := make([][]byte, 0, len(rooms))
	for i, ri := range rooms {
		lines = append(lines, wire.AppendFrame(nil, &wire.Frame{T: wire.FrameRoom, Room: ri.Name,
			Count: uint64(ri.Members), Topic: ri.Topic, Limit: uint64(max(ri.Limit, 0)),
			Locked: ri.Locked, More: i < len(rooms)-1}))
	}
	s.out.SendFrames(m, lines)
}

// RoomInfo describes a room for listings.
type RoomInfo struct {
	Name       string `json:"name"`
	Members    int    `json:"members"`
	Topic      string `json:"topic,omitempty"`
	Limit      int    `json:"limit,omitempty"`
	Locked     bool   `json:"locked,omitempty"`
	Configured bool   `json:"configured,omitempty"`
}

// Rooms lists the rooms, sorted by name.
func (s *Server) Rooms() []RoomInfo {
	var out []RoomInfo
	remote := s.remoteRooms()
	for _, r := range s.rooms.all() {
		set := r.settings()
		n := r.Len()
		if ri, ok := remote[r.key]; ok {
			n += ri.Members
			delete(remote, r.key)
		}
		out = append(out, RoomInfo{Name: r.name, Members: n, Topic: set.topic, Limit: set.limit,
			Locked: set.key != "", Configured: set.configured})
	}
	if len(remote) > 0 { // rooms whose members are all on other relays
		for _, ri := range remote {
			out = append(out, ri)
		}
		sort.Slice(out, func(i, j int) bool { return roomKey(out[i].Name) < roomKey(out[j].Name) })
	}
	return out
}

// keptRoom returns the room called name, created if need be, marked to
// stay while empty (configured). A room removed as it is found is opened
// again.
func (s *Server) keptRoom(name string) (*room, error) {
	for {
		r, err := s.openRoom(name)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		removed := r.set.removed
		r.set.configured = true
		r.mu.Unlock()
		if !removed {
			return r, nil
		}
	}
}

// ConfigureRoom creates or updates a room that stays when empty: its
// topic, limit and key become rs's, announced if the topic changed. With
// Config.Operator they are stored, and the room exists with them after a
// restart; an error wrapping ErrNotStored says they hold until this relay
// stops.
func (s *Server) ConfigureRoom(rs RoomSettings) error {
	if rs.Topic != "" {
		if err := wire.CheckText(rs.Topic); err != nil {
			return err
		}
	}
	r, old, applied, after, err := s.setRoom(rs.Name, func(v *roomValue) {
		v.Topic, v.Limit, v.Key = &rs.Topic, &rs.Limit, &rs.Key
	})
	defer after()
	if r != nil && applied && rs.Topic != old {
		s.announceTopic(r, rs.Topic)
	}
	return err
}

// fileRoom configures a room of the config file (Config.Rooms) at start,
// over what the operator's state set on it: the file wins for each
// setting it states (a topic, a limit other than 0, a key), and the room
// keeps the others. Nothing is stored: the file is the record.
func (s *Server) fileRoom(rs RoomSettings) error {
	if rs.Topic != "" {
		if err := wire.CheckText(rs.Topic); err != nil {
			return err
		}
	}
	r, err := s.keptRoom(rs.Name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rs.Topic != "" {
		r.set.topic = rs.Topic
	}
	if rs.Limit != 0 {
		r.set.limit = rs.Limit
	}
	if rs.Key != "" {
		r.set.key = rs.Key
	}
	return nil
}

// SetTopic sets a room's topic and announces it in the room. The room is
// created (and kept) if it does not exist. With Config.Operator the topic
// is stored, and the room exists with it after a restart; an error
// wrapping ErrNotStored says it holds until this relay stops.
func (s *Server) SetTopic(room, topic string) error {
	if err := wire.CheckText(topic); err != nil {
		return err
	}
	r, _, applied, after, err := s.setRoom(room, func(v *roomValue) { v.Topic = &topic })
	defer after()
	if r == nil {
		return err
	}
	if applied {
		s.announceTopic(r, topic)
	}
	s.log.Info("admin topic", zap.String("room", r.name), zap.String("topic", topic))
	return err
}

// announceTopic tells r's members its topic is now topic.
func (s *Server) announceTopic(r *room, topic string) {
	if r.Len() == 0 {
		return // the welcome carries it
	}
	text := formatf(s.words().Topic, topic)
	s.broadcast(r, &wire.Frame{T: wire.FrameNotice, Text: text, Topic: topic}, classicLine(s.words().Admin, text), nil, KindNotice)
	s.out.Flush()
}

// announce tells a room that m joined or left (t is FrameJoin or
// FrameLeave): at once in a room of up to AnnounceLimit members, else
// gathered into the room's next batch (flushed by the sweeper, at most
// once a second per room).
func (s *Server) announce(r *room, to []*Member, m *Member, t, reason string, classic []byte, kind string) {
	if s.cfg.AnnounceLimit < 0 || len(to) <= s.cfg.AnnounceLimit {
		s.broadcastTo(r, to, &wire.Frame{T: t, From: m.Name, Reason: reason}, classic, m, kind)
		return
	}
	r.batch.mu.Lock()
	b := &r.batch.joins
	if t != wire.FrameJoin {
		b = &r.batch.leaves // leaves and timeouts
	}
	if len(b.names) < batchNames {
		b.names = append(b.names, m.Name)
	}
	b.count++
	first := !r.batch.pending
	r.batch.pending = true
	r.batch.mu.Unlock()
	if first {
		s.pending.add(r)
	}
}

// batchNames is how many names a batched announcement shows.
const batchNames = 5

// pendingRooms is the set of rooms with a batch to announce.
type pendingRooms struct {
	mu    sync.Mutex // protects rooms; leaf
	rooms []*room
}

func (p *pendingRooms) add(r *room) {
	p.mu.Lock()
	p.rooms = append(p.rooms, r)
	p.mu.Unlock()
}

func (p *pendingRooms) take() []*room {
	p.mu.Lock()
	defer p.mu.Unlock()
	rs := p.rooms
	p.rooms = nil
	return rs
}

// flushAnnouncements announces every room's gathered joins and leaves, one
// event each. The sweeper calls it once a second.
func (s *Server) flushAnnouncements() {
	rooms := s.pending.take()
	if len(rooms) == 0 {
		return
	}
	w := s.words()
	for _, r := range rooms {
		r.batch.mu.Lock()
		joins, leaves := r.batch.joins, r.batch.leaves
		r.batch.joins, r.batch.leaves, r.batch.pending = batch{}, batch{}, false
		r.batch.mu.Unlock()
		for _, b := range []struct {
			batch
			t, kind string
		}{{joins, wire.FrameJoin, KindJoin}, {leaves, wire.FrameLeave, KindLeave}} {
			if b.count == 0 {
				continue
			}
			ev := &wire.Frame{T: b.t, From: b.names[0]} // a batch of one is an ordinary event
			if b.count > 1 {
				ev.Names, ev.Count = b.names, uint64(b.count)
			}
			s.broadcast(r, ev, classicLine("%s", w.Batch(b.t == wire.FrameJoin, b.names, b.count)), nil, b.kind)
		}
	}
	s.out.Flush()
}

// v2Msg sends a direct message: into the recipient's inbox (or one line to
// a classic recipient) and the sender's own (its echo and ack).
func (s *Server) v2Msg(g *datagram, f *wire.Frame, m *Member, _ *room, now time.Time) {
	inbox := m.inbox.Load()
	if inbox == nil {
		s.obs.DatagramDropped(DropUnknownVerb)
		return
	}
	if !s.checkChat(m, wire.Inbox, "", f, now) {
		return
	}
	to := s.reg.ByName(f.To)
	var code, toName string
	switch {
	case to == m: // a note to oneself: its own copy only
		toName = m.Name
	case to != nil:
		code, toName = s.deliverDM(to, m.Name, f.ID, f.Text), to.Name
	case s.cfg.Cluster != nil:
		code, toName = s.dmElsewhere(m, f)
	default:
		code = wire.CodeNoSuchMember
	}
	if code != "" {
		s.sendV2(m, &wire.Frame{T: wire.FrameError, Room: wire.Inbox, ID: f.ID, Code: code, Reason: s.words().dmRefusal(code)})
		return
	}
	ev := wire.Frame{T: wire.FrameDM, From: m.Name, To: toName, ID: f.ID, Text: f.Text}
	if s.broadcast(inbox, &ev, nil, nil, KindDM) {
		m.v2.remember(f.ID, ev.Seq)
	}
	if ce := s.log.Check(zap.DebugLevel, "dm"); ce != nil { // never the text
		ce.Write(zap.String("from", m.Name), zap.String("to", toName), zap.Int("bytes", len(f.Text)))
	}
}

// deliverDM hands a direct message from the member called from to to, a
// member of this relay: one line to a classic member, an event of its
// inbox to a v2 one. It returns "" when delivered, else the wire code of
// the refusal (wire.CodeUnsupported: a revision-0 recipient has no inbox).
func (s *Server) deliverDM(to *Member, from string, id uint64, text string) string {
	if to.Proto == ProtoClassic {
		s.out.Send(to, classicLine(s.words().Whisper, from, text))
		return ""
	}
	inbox := to.inbox.Load()
	if inbox == nil {
		return wire.CodeUnsupported
	}
	ev := wire.Frame{T: wire.FrameDM, From: from, To: to.Name, ID: id, Text: text}
	s.broadcast(inbox, &ev, nil, nil, KindDM)
	return ""
}

// dmElsewhere sends m's direct message to a member of another relay of
// the cluster. It returns the recipient's name, and "" when that relay
// delivered it, else the wire code of the refusal.
func (s *Server) dmElsewhere(m *Member, f *wire.Frame) (code, to string) {
	rec, ok := s.remoteMember(f.To)
	if !ok {
		return wire.CodeNoSuchMember, ""
	}
	code, err := s.cfg.Cluster.SendDM(rec.Node, DirectMessage{From: m.Name, To: rec.Name, ID: f.ID, Text: f.Text})
	switch {
	case err != nil:
		s.obs.DatagramDropped(DropUnavailable)
		return wire.CodeUnavailable, rec.Name
	case code != "" && code != wire.CodeUnsupported:
		return wire.CodeNoSuchMember, rec.Name
	}
	return code, rec.Name
}

// KickFromRoom removes the member called name from one room: a v2 member is
// told (error "removed" with the reason, then parted) and stays logged in;
// the room's others see it leave with the reason. A classic member lives in
// main only, so kicking one from main kicks it from the relay. It returns
// ErrNoMember or ErrNoRoom, or ErrNoMember if the member is not in the room.
func (s *Server) KickFromRoom(name, room, reason string) (*Member, error) {
	if err := wire.CheckText(reason); err != nil {
		return nil, err
	}
	r := s.roomNamed(room)
	if r == nil {
		return nil, ErrNoRoom
	}
	m := s.reg.ByName(name)
	if m == nil {
		return nil, ErrNoMember
	}
	if m.Proto == ProtoClassic && r == s.main {
		return s.Kick(name, reason)
	}
	if _, ok := r.leave(m); !ok {
		return nil, ErrNoMember
	}
	if reason == "" {
		reason = "-"
	}
	s.log.Info("admin kick", zap.String("name", m.Name), zap.String("room", r.name), zap.String("reason", reason))
	s.out.SendFrames(m, [][]byte{
		wire.AppendFrame(nil, &wire.Frame{T: wire.FrameError, Room: r.name, Code: wire.CodeRemoved, Reason: formatf(s.words().kickedSelf, reason)}),
		wire.AppendFrame(nil, &wire.Frame{T: wire.FrameParted, Room: r.name}),
	})
	s.broadcast(r, &wire.Frame{T: wire.FrameLeave, From: m.Name, Reason: reason}, classicLine(s.words().Kicked, m.Name, reason), m, KindLeave)
	s.out.Flush()
	s.saveSession(m)
	s.rooms.dropIfEmpty(r)
	return m, nil
}
