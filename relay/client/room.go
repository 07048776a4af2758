package client

import (
	"math/rand/v2"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// A session receives several sequenced streams (v2 revision 1): main, each
// room it joined, and its inbox "@", where direct messages arrive. Each has
// its own seq, epoch, sequencer and gap repair, is pinged every heartbeat
// with its own last, and is repaired after a resume from its own last. A
// room is what the client keeps of one stream.

// Room joining and parting: retransmission and giving up.
const (
	joinFirstWait = 250 * time.Millisecond
	joinMaxWait   = 2 * time.Second
	maxJoinTries  = 12 // about 18 s of joins without an answer: give up
	maxPartTries  = 8  // parts without parted: stop asking, we are gone anyway
)

// room is one stream: a room the session is in or joining, or its inbox.
type room struct {
	name  string // as the relay names it (its welcome), or as asked until then
	key   string // compare key (wire.CanonicalRoom); wire.Inbox for the inbox
	pass  string // the key (password) to join with
	epoch string // "" until its welcome
	base  uint64 // the room's latest seq at our join: later events are this session's
	topic string

	seq    *sequencer
	repair struct {
		armed bool
		due   time.Time
		last  uint64 // seq.last when the previous request went out
		bo    backoff
	}

	// joining: a join is out and no welcome has come yet. Events for the
	// room are dropped until it does (the welcome's backlog and repair
	// bring them). quiet joins (again, after a new session) emit no
	// EventJoined.
	joining bool
	quiet   bool
	join    retry
}

// retry is a request's retransmission schedule.
type retry struct {
	next  time.Time
	tries int
	bo    backoff
}

func (r *retry) start() {
	r.next, r.tries = time.Time{}, 0
	r.bo = backoff{first: joinFirstWait, max: joinMaxWait}
}

// due reports whether the request is to be sent at now, and schedules the
// next send if so.
func (r *retry) due(now time.Time, rnd *rand.Rand) bool {
	if now.Before(r.next) {
		return false
	}
	r.tries++
	r.next = now.Add(r.bo.next(rnd))
	return true
}

func newRoom(name, key string) *room {
	r := &room{name: name, key: key, seq: newSequencer(0)}
	r.repair.bo = backoff{first: 250 * time.Millisecond, max: time.Second}
	return r
}

// welcomed takes a room's welcome: the first one sets the sequence; one
// with a new epoch starts a new sequence (history before it is gone); one
// with the same epoch says what exists (repair fetches what we lack); one
// of an epoch we left behind is ignored. It reports whether this welcome
// ends a join.
func (r *room) welcomed(f *wire.Frame, oldEpoch map[string]bool) (joined bool) {
	if !r.joining && f.Epoch != r.epoch && (f.Epoch == "" || oldEpoch[f.Epoch]) {
		return false // a straggler from before a restart
	}
	if f.Room != "" {
		r.name = f.Room
	}
	if r.joining || f.Topic != "" {
		// A welcome carries the topic; a repeated or resumed one too.
		r.topic = f.Topic
	}
	switch {
	case r.epoch == "":
		r.epoch, r.base = f.Epoch, f.Seq
		r.seq.reset(f.Seq)
	case f.Epoch != r.epoch:
		oldEpoch[r.epoch] = true
		r.epoch, r.base = f.Epoch, f.Seq
		r.seq.reset(f.Seq)
	default:
		r.seq.learn(f.Seq)
		if r.joining {
			r.base = f.Seq // joined again (a new session): ours start here
		}
	}
	r.repair.armed = false
	joined = r.joining
	r.joining = false
	return joined
}

// listReq is a who or rooms request: retransmitted until its last answer
// frame (more: false) comes, the answer's pieces gathered meanwhile.
type listReq struct {
	room    string // who: the room as asked
	waiters []chan cmdReply
	names   []string   // who
	rooms   []RoomInfo // rooms
	next    time.Time
	bo      backoff
}

func newListReq(room string) *listReq {
	return &listReq{room: room, bo: backoff{first: 500 * time.Millisecond, max: 2 * time.Second}}
}

// answer hands r to every waiter.
func (l *listReq) answer(r cmdReply) {
	for _, w := range l.waiters {
		w <- r
	}
	l.waiters = nil
}

// RoomInfo is one room of the relay's list (Rooms).
type RoomInfo struct {
	Name   string
	Count  uint64 // members
	Topic  string
	Limit  uint64 // member limit, 0: none
	Locked bool   // joining needs a key
}

// JoinedRoom is one room the client is in (Joined).
type JoinedRoom struct {
	Name  string
	Topic string
	// Joining: the join is not answered yet; the room's messages wait.
	Joining bool
}

// roomKey is the compare key of a room name, from a small cache (names
// come in every frame, PRECIS is not cheap). An invalid name is its own
// key, so it matches nothing the client joined.
func (c *Client) roomKey(name string) string {
	switch name {
	case "", wire.RoomMain:
		return wire.RoomMain
	case wire.Inbox:
		return wire.Inbox
	}
	if k, ok := c.keys[name]; ok {
		return k
	}
	_, k, err := wire.CanonicalRoom(name)
	if err != nil {
		k = name
	}
	if len(c.keys) >= 1024 {
		clear(c.keys)
	}
	c.keys[name] = k
	return k
}

// roomOf is the stream a frame's room names: a room we are in or joining,
// or the inbox; nil if none.
func (c *Client) roomOf(name string) *room {
	if name == wire.Inbox {
		return c.inbox
	}
	return c.byKey[c.roomKey(name)]
}

// addRoom starts keeping r.
func (c *Client) addRoom(r *room) {
	c.rooms = append(c.rooms, r)
	c.byKey[r.key] = r
}

// removeRoom stops keeping r: its events are dropped from now on, its
// waiting messages are dropped with an error event each (code, reason).
func (c *Client) removeRoom(r *room, code, reason string) {
	delete(c.byKey, r.key)
	for i, x := range c.rooms {
		if x == r {
			c.rooms = append(c.rooms[:i], c.rooms[i+1:]...)
			break
		}
	}
	if r.epoch != "" {
		c.oldEpoch[r.epoch] = true
	}
	c.dropHistories(r)
	for _, m := range c.out.drop(func(m *outMsg) bool { return m.to == "" && m.room == r.key }) {
		c.emit(Event{Type: EventError, Room: r.name, ID: m.id, Code: code, Reason: reason})
	}
}

// streams are the rooms and the inbox, for pings and repair.
func (c *Client) streams() []*room {
	if c.inbox == nil {
		return c.rooms
	}
	return append(c.rooms[:len(c.rooms):len(c.rooms)], c.inbox)
}

// joinedRooms is what Joined reports.
func (c *Client) joinedRooms() []JoinedRoom {
	out := make([]JoinedRoom, 0, len(c.rooms))
	for _, r := range c.rooms {
		out = append(out, JoinedRoom{Name: r.name, Topic: r.topic, Joining: r.joining})
	}
	return out
}

// partReq is a part waiting for its parted.
type partReq struct {
	name  string
	quiet bool // parting again after a new session: no EventParted
	retry
}

// onJoin starts joining a room (a cmdJoin). Joining a room we are in
// reports EventJoined again, so a user interface can switch to it.
func (c *Client) onJoin(name, key, pass string) error {
	if r := c.byKey[key]; r != nil {
		if r.joining {
			r.pass = pass
			return nil
		}
		c.emit(Event{Type: EventJoined, Room: r.name, Topic: r.topic})
		return nil
	}
	delete(c.parting, key)
	r := newRoom(name, key)
	r.pass, r.joining = pass, true
	r.join.start()
	c.addRoom(r)
	return nil
}

// onPart leaves a room (a cmdPart): events for it stop at once, its
// waiting messages are dropped, and part is sent until parted comes.
func (c *Client) onPart(key string) error {
	r := c.byKey[key]
	if r == nil {
		if c.parting[key] != nil {
			return nil
		}
		return ErrNotInRoom
	}
	c.removeRoom(r, wire.CodeNotInRoom, "not sent: you left the room")
	c.startPart(r.name, key, false)
	return nil
}

func (c *Client) startPart(name, key string, quiet bool) {
	p := &partReq{name: name, quiet: quiet}
	p.start()
	c.parting[key] = p
}

// onParted handles a parted frame: a part of ours is done. A parted we
// did not ask for (a late duplicate) is ignored; if we really are not in a
// room, its next ping says so (not_in_room).
func (c *Client) onParted(f *wire.Frame) {
	key := c.roomKey(f.Room)
	if c.removed != nil && key == wire.RoomMain {
		// Removed from main only: still logged in, in the other rooms.
		if r := c.byKey[key]; r != nil {
			c.lostRoom(r, codeRemoved, c.removed.Reason)
		}
		c.removed = nil
		return
	}
	p := c.parting[key]
	if p == nil {
		return
	}
	delete(c.parting, key)
	if !p.quiet {
		c.emit(Event{Type: EventParted, Room: f.Room})
	}
}

// lostRoom forgets a room the relay says we are not in (kicked from it, or
// a re-join refused) and reports it.
func (c *Client) lostRoom(r *room, code, reason string) {
	c.removeRoom(r, code, reason)
	c.emit(Event{Type: EventParted, Room: r.name, Code: code, Reason: reason})
}

// rejoinAll makes a new session (after a relay restart or a forgotten
// session) what the old one was: it joins again, quietly, every room but
// main, and parts main if we had left it (hello puts us there). The inbox
// is the new session's: it waits for its welcome. Against a relay that no
// longer speaks revision 1, every room but main is lost.
func (c *Client) rejoinAll(inMain bool) {
	for key, p := range c.parting {
		if !p.quiet {
			c.emit(Event{Type: EventParted, Room: p.name})
		}
		delete(c.parting, key)
	}
	for _, r := range append([]*room(nil), c.rooms...) {
		if r.key == wire.RoomMain {
			continue
		}
		if c.rev < 1 {
			c.lostRoom(r, wire.CodeUnsupported, "the relay no longer supports rooms")
			continue
		}
		// A join the user is still waiting for keeps its EventJoined.
		r.quiet = r.quiet || !r.joining
		r.joining = true
		r.join.start()
	}
	if c.rev < 1 {
		for _, m := range c.out.drop(func(m *outMsg) bool { return m.to != "" }) {
			c.emit(Event{Type: EventError, ID: m.id, To: m.to, Code: wire.CodeUnsupported, Reason: "the relay no longer supports direct messages"})
		}
	}
	if !inMain && c.rev >= 1 {
		if m := c.byKey[wire.RoomMain]; m != nil {
			c.removeRoom(m, wire.CodeNotInRoom, "not sent: you left the room")
			c.startPart(m.name, m.key, true)
		}
	}
}

// codeRemoved is the error code that tells a member the relay (an
// administrator) removed it: from the relay (bye follows) or from one room
// (parted follows).
const codeRemoved = wire.CodeRemoved

// onErrorFrame handles an error frame: a refused chat or msg (by id), a
// refused join, a refused who, a frame for a room we are not in, or our
// removal by the relay.
func (c *Client) onErrorFrame(f *wire.Frame) {
	e := Event{Type: EventError, Room: f.Room, Code: f.Code, Reason: f.Reason, ID: f.ID}
	if f.Code == codeRemoved && f.ID == 0 {
		if r := c.roomOf(f.Room); r != nil && r != c.inbox && r.key != wire.RoomMain {
			// Removed from this room only; its parted follows.
			c.lostRoom(r, codeRemoved, f.Reason)
			return
		}
		// From main: the relay removed us (bye follows, in the same
		// datagram), or only from main (parted follows). onDatagram
		// decides once the datagram is read.
		c.removed = f
		return
	}
	if f.ID != 0 && f.Code == wire.CodeUnavailable {
		// Not stored, not refused: the relay cannot reach its store. It
		// stays in the outbox and is retransmitted until it is stored; the
		// user is told once per message.
		for _, m := range c.out.flight() {
			if m.id == f.ID {
				if !m.told {
					m.told = true
					c.emit(e)
				}
				break
			}
		}
		return
	}
	if f.ID != 0 {
		// Refused for good: do not retransmit it.
		if m := c.out.take(f.ID); m != nil && m.to != "" {
			e.To, e.Room = m.to, ""
		} else if m != nil && c.byKey[m.room] != nil {
			e.Room = c.byKey[m.room].name
		}
		c.emit(e)
		if r := c.roomOf(f.Room); f.Code == wire.CodeNotInRoom && r != nil && r != c.inbox && !r.joining {
			c.lostRoom(r, f.Code, f.Reason)
		}
		return
	}
	key := c.roomKey(f.Room)
	r := c.byKey[key]
	switch {
	case f.Room != "" && r != nil && r.joining:
		c.removeRoom(r, f.Code, f.Reason)
		c.emit(e)
		if r.quiet {
			c.emit(Event{Type: EventParted, Room: r.name, Code: f.Code, Reason: f.Reason})
		}
	case f.Room != "" && c.whos[key] != nil:
		c.whos[key].answer(cmdReply{err: &RelayError{Room: f.Room, Code: f.Code, Reason: f.Reason}})
		delete(c.whos, key)
	case f.Code == wire.CodeNotInRoom && r != nil:
		c.lostRoom(r, f.Code, f.Reason)
	case f.Code == wire.CodeNotInRoom && c.parting[key] != nil:
		// Our part crossed the relay's answer to a ping: we are out.
		c.onParted(f)
	default:
		c.emit(e)
	}
}

// onMembers gathers a who answer.
func (c *Client) onMembers(f *wire.Frame) {
	key := c.roomKey(f.Room)
	w := c.whos[key]
	if w == nil {
		return
	}
	w.names = append(w.names, f.Names...)
	if !f.More {
		w.answer(cmdReply{names: w.names})
		delete(c.whos, key)
	}
}

// onRoomEntry gathers a rooms answer.
func (c *Client) onRoomEntry(f *wire.Frame) {
	l := c.roomList
	if l == nil {
		return
	}
	l.rooms = append(l.rooms, RoomInfo{Name: f.Room, Count: f.Count, Topic: f.Topic, Limit: f.Limit, Locked: f.Locked})
	if !f.More {
		l.answer(cmdReply{rooms: l.rooms})
		c.roomList = nil
	}
}

// requestFrames appends the joins, parts, who and rooms requests due at
// now, and gives up on joins and parts that were never answered.
func (c *Client) requestFrames(now time.Time, frames []*wire.Frame) []*wire.Frame {
	for _, r := range append([]*room(nil), c.rooms...) {
		if !r.joining || !r.join.due(now, c.cfg.Rand) {
			continue
		}
		if r.join.tries > maxJoinTries {
			c.removeRoom(r, "no_answer", "the relay did not answer the join")
			c.emit(Event{Type: EventError, Room: r.name, Code: "no_answer", Reason: "the relay did not answer the join"})
			continue
		}
		frames = append(frames, &wire.Frame{T: wire.FrameJoin, Room: r.name, Key: r.pass})
	}
	for key, p := range c.parting {
		if !p.due(now, c.cfg.Rand) {
			continue
		}
		if p.tries > maxPartTries {
			c.onParted(&wire.Frame{Room: p.name})
			delete(c.parting, key)
			continue
		}
		frames = append(frames, &wire.Frame{T: wire.FramePart, Room: p.name})
	}
	for _, w := range c.whos {
		if !now.Before(w.next) {
			w.names = nil // a fresh answer
			frames = append(frames, &wire.Frame{T: wire.FrameWho, Room: w.room})
			w.next = now.Add(w.bo.next(c.cfg.Rand))
		}
	}
	if l := c.roomList; l != nil && !now.Before(l.next) {
		l.rooms = nil
		frames = append(frames, &wire.Frame{T: wire.FrameRooms})
		l.next = now.Add(l.bo.next(c.cfg.Rand))
	}
	return c.historyFrames(now, frames)
}

// requestWake is when requestFrames next has something to do.
func (c *Client) requestWake(earlier func(time.Time)) {
	for _, r := range c.rooms {
		if r.joining {
			earlier(r.join.next)
		}
	}
	for _, p := range c.parting {
		earlier(p.next)
	}
	for _, w := range c.whos {
		earlier(w.next)
	}
	if c.roomList != nil {
		earlier(c.roomList.next)
	}
	c.historyWake(earlier)
}
