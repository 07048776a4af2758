package client_test

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// fakeRelay is a small in-memory relay speaking v2 revision 1 (or 0, or 2:
// every datagram compact, replies too), as docs/PROTOCOL.md specifies it,
// for testing the client against the spec before and beside the real
// relay: rooms with their own seq and epoch,
// keys, topics, the inbox and direct messages, who and rooms lists, resume
// with a welcome per room. It validates no cookie and has no ring limit.
// A test can lose outgoing frames (drop), see every frame it received
// (frames), and send any frame (send).
type fakeRelay struct {
	t    testing.TB
	pc   *net.UDPConn
	rev  uint64 // the highest revision it speaks
	done chan struct{}

	compact atomic.Int64 // datagrams sent with a context line (revision 2)

	mu      sync.Mutex // protects everything below
	epoch   string
	rooms   map[string]*fakeRoom // by compare key
	byAddr  map[string]*fakeSession
	byToken map[string]*fakeSession
	got     []fakeGot
	tokens  int
	// drop, if set, loses the frames it reports true for, on their way to
	// the session called to.
	drop func(to string, f *wire.Frame) bool
	// hook, if set, handles a received frame instead of the relay when it
	// reports true.
	hook func(s *fakeSession, f *wire.Frame) bool
	// batch, if set, announces joins and leaves as batches (big rooms).
	batch bool
	// noTail, if set, answers pings with a pong only, without the events
	// after the ping's last: only repair fetches what a client lacks.
	noTail bool
}

type fakeGot struct {
	from string // the session's name, or "" before login
	f    wire.Frame
	dg   int // which datagram it came in, counting from 1
}

type fakeRoom struct {
	name, key, epoch, topic, pass string
	limit                         uint64
	log                           []wire.Frame // seq i+1 is log[i]
	members                       map[string]*fakeSession
}

type fakeSession struct {
	name, token string
	rev         uint64
	addr        *net.UDPAddr
	inbox       *fakeRoom
	ids         map[uint64]uint64 // message id -> seq
}

func startFake(t testing.TB, rev uint64) *fakeRelay {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	fr := &fakeRelay{
		t: t, pc: pc, rev: rev, done: make(chan struct{}),
		epoch:   "e1",
		rooms:   make(map[string]*fakeRoom),
		byAddr:  make(map[string]*fakeSession),
		byToken: make(map[string]*fakeSession),
	}
	fr.room(wire.RoomMain)
	go fr.serve()
	t.Cleanup(func() { pc.Close(); <-fr.done })
	return fr
}

func (fr *fakeRelay) addr() string { return fr.pc.LocalAddr().String() }

// room returns the room called name, created if need be. Caller holds mu
// (or the relay is not serving yet).
func (fr *fakeRelay) room(name string) *fakeRoom {
	_, key, err := wire.CanonicalRoom(name)
	if name == wire.RoomMain {
		key, err = name, nil
	}
	if err != nil {
		return nil
	}
	r := fr.rooms[key]
	if r == nil {
		r = &fakeRoom{name: name, key: key, epoch: fr.epoch + "-" + key, members: make(map[string]*fakeSession)}
		if key == wire.RoomMain {
			r.epoch = fr.epoch
		}
		fr.rooms[key] = r
	}
	return r
}

// setRoom configures a room (a topic, a key, a limit) before clients come.
func (fr *fakeRelay) setRoom(name, topic, pass string, limit uint64) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	r := fr.room(name)
	r.topic, r.pass, r.limit = topic, pass, limit
}

// frames returns the frames received of type typ (all with "").
func (fr *fakeRelay) frames(typ string) []fakeGot {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	var out []fakeGot
	for _, g := range fr.got {
		if typ == "" || g.f.T == typ {
			out = append(out, g)
		}
	}
	return out
}

// set changes the relay's settings while it serves.
func (fr *fakeRelay) set(f func(fr *fakeRelay)) {
	fr.mu.Lock()
	f(fr)
	fr.mu.Unlock()
}

func (fr *fakeRelay) setDrop(drop func(to string, f *wire.Frame) bool) {
	fr.mu.Lock()
	fr.drop = drop
	fr.mu.Unlock()
}

func (fr *fakeRelay) setHook(hook func(s *fakeSession, f *wire.Frame) bool) {
	fr.mu.Lock()
	fr.hook = hook
	fr.mu.Unlock()
}

// session returns the session called name.
func (fr *fakeRelay) session(name string) *fakeSession {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	for _, s := range fr.byToken {
		if s.name == name {
			return s
		}
	}
	return nil
}

// send sends frames to the session called name, as they are (no drop).
func (fr *fakeRelay) send(name string, frames ...*wire.Frame) {
	s := fr.session(name)
	if s == nil {
		fr.t.Errorf("fake relay: no session %s", name)
		return
	}
	fr.mu.Lock()
	addr := s.addr
	fr.mu.Unlock()
	fr.write(addr, frames)
}

// event appends an event to a room and sends it to its members, as the
// relay would for an admin notice or another member's chat.
func (fr *fakeRelay) event(room string, f wire.Frame) uint64 {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	r := fr.room(room)
	return fr.broadcast(r, f, nil)
}

// restart forgets every session and room: a new epoch.
func (fr *fakeRelay) restart(epoch string) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	fr.epoch = epoch
	keep := fr.rooms
	fr.rooms = make(map[string]*fakeRoom)
	for _, r := range keep {
		n := fr.room(r.name)
		n.topic, n.pass, n.limit = r.topic, r.pass, r.limit
	}
	fr.byAddr = make(map[string]*fakeSession)
	fr.byToken = make(map[string]*fakeSession)
}

func (fr *fakeRelay) serve() {
	defer close(fr.done)
	buf := make([]byte, 1<<16)
	dg := 0
	for {
		n, from, err := fr.pc.ReadFromUDP(buf)
		if err != nil {
			return
		}
		frames, err := wire.DecodeV2(nil, buf[:n])
		if err != nil {
			continue
		}
		dg++
		fr.mu.Lock()
		var out []*wire.Frame
		for i := range frames {
			f := &frames[i]
			s := fr.byAddr[from.String()]
			name := ""
			if s != nil {
				name = s.name
			}
			fr.got = append(fr.got, fakeGot{from: name, f: *f, dg: dg})
			if fr.hook != nil && s != nil && fr.hook(s, f) {
				continue
			}
			out = append(out, fr.handle(s, from, f)...)
		}
		fr.mu.Unlock()
		fr.write(from, out)
	}
}

// write sends frames in datagrams of at most 60 frames; a relay of
// revision 2 writes them compact (context lines), 30 at most, since each
// may need a context line of its own.
func (fr *fakeRelay) write(to *net.UDPAddr, frames []*wire.Frame) {
	encode, per := wire.EncodeV2, 60
	if fr.rev >= 2 {
		encode, per = wire.EncodeV2Compact, 30
	}
	for len(frames) > 0 {
		n := min(len(frames), per)
		b := encode(frames[:n]...)
		if bytes.Contains(b, []byte(`{"t":"ctx"`)) {
			fr.compact.Add(1)
		}
		fr.pc.WriteToUDP(b, to)
		frames = frames[n:]
	}
}

// deliver sends f to s now, unless drop loses it. Caller holds mu.
func (fr *fakeRelay) deliver(s *fakeSession, fs ...*wire.Frame) {
	var out []*wire.Frame
	for _, f := range fs {
		if fr.drop == nil || !fr.drop(s.name, f) {
			out = append(out, f)
		}
	}
	fr.write(s.addr, out)
}

// broadcast appends f to r's log and delivers it to every member but
// except. Caller holds mu.
func (fr *fakeRelay) broadcast(r *fakeRoom, f wire.Frame, except *fakeSession) uint64 {
	f.Room, f.Epoch, f.Seq = r.name, r.epoch, uint64(len(r.log)+1)
	r.log = append(r.log, f)
	for _, m := range r.members {
		if m != except {
			g := f
			fr.deliver(m, &g)
		}
	}
	return f.Seq
}

// events are r's events from..to (inclusive, clamped).
func (r *fakeRoom) events(from, to uint64) []*wire.Frame {
	var out []*wire.Frame
	for seq := max(from, 1); seq <= min(to, uint64(len(r.log))); seq++ {
		f := r.log[seq-1]
		out = append(out, &f)
	}
	return out
}

func (r *fakeRoom) backlog(n int) []*wire.Frame {
	var out []*wire.Frame
	for _, f := range r.log[max(len(r.log)-n, 0):] {
		f.History = true
		out = append(out, &f)
	}
	return out
}

// handle answers one frame. Caller holds mu.
func (fr *fakeRelay) handle(s *fakeSession, from *net.UDPAddr, f *wire.Frame) []*wire.Frame {
	rev1 := fr.rev >= 1
	switch f.T {
	case wire.FrameHello:
		if s != nil {
			// A repeated hello: the same welcome again.
			return fr.welcomes(s, true)
		}
		for _, o := range fr.byToken {
			if o.name == f.Name {
				return []*wire.Frame{{T: wire.FrameRefused, Room: wire.RoomMain, Code: "taken", Reason: "name taken"}}
			}
		}
		fr.tokens++
		s = &fakeSession{name: f.Name, token: fmt.Sprintf("tok%d", fr.tokens), rev: min(f.Rev, fr.rev), addr: from, ids: make(map[uint64]uint64)}
		if s.rev >= 1 {
			s.inbox = &fakeRoom{name: wire.Inbox, epoch: fr.epoch + "-inbox-" + s.name}
		}
		fr.byAddr[from.String()], fr.byToken[s.token] = s, s
		out := fr.welcomes(s, true)
		main := fr.rooms[wire.RoomMain]
		main.members[s.name] = s
		fr.write(from, out)
		fr.announce(main, wire.Frame{T: wire.FrameJoin, From: s.name})
		return nil
	case wire.FrameResume:
		o := fr.byToken[f.Token]
		if o == nil {
			return []*wire.Frame{{T: wire.FrameRefused, Room: wire.RoomMain, Code: wire.CodeUnknownSession, Reason: "unknown session"}}
		}
		delete(fr.byAddr, o.addr.String())
		o.addr = from
		fr.byAddr[from.String()] = o
		out := fr.welcomes(o, false)
		if m := fr.rooms[wire.RoomMain]; m.members[o.name] != nil {
			out = append(out, m.events(f.Last+1, uint64(len(m.log)))...)
		}
		return out
	}
	if s == nil {
		return nil
	}
	if !rev1 {
		switch f.T {
		case wire.FrameChat, wire.FramePing, wire.FrameRepair, wire.FrameWho:
			if f.Room != wire.RoomMain {
				return []*wire.Frame{{T: wire.FrameError, Room: f.Room, Code: "room", Reason: "no such room"}}
			}
		case wire.FrameQuit:
		default:
			return nil // unknown to revision 0
		}
	}
	r := fr.memberRoom(s, f.Room)
	notIn := &wire.Frame{T: wire.FrameError, Room: f.Room, ID: f.ID, Code: wire.CodeNotInRoom, Reason: "you are not in that room"}
	switch f.T {
	case wire.FrameChat:
		if r == nil || r == s.inbox {
			return []*wire.Frame{notIn}
		}
		if seq, dup := s.ids[f.ID]; dup {
			return []*wire.Frame{{T: wire.FrameAck, Room: r.name, ID: f.ID, Seq: seq}}
		}
		s.ids[f.ID] = fr.broadcast(r, wire.Frame{T: wire.FrameChat, From: s.name, ID: f.ID, Text: f.Text}, nil)
	case wire.FrameMsg:
		if seq, dup := s.ids[f.ID]; dup {
			return []*wire.Frame{{T: wire.FrameAck, Room: wire.Inbox, ID: f.ID, Seq: seq}}
		}
		var to *fakeSession
		for _, o := range fr.byToken {
			if o.name == f.To {
				to = o
			}
		}
		switch {
		case to == nil:
			return []*wire.Frame{{T: wire.FrameError, ID: f.ID, Code: wire.CodeNoSuchMember, Reason: "no such member"}}
		case to.rev < 1:
			return []*wire.Frame{{T: wire.FrameError, ID: f.ID, Code: wire.CodeUnsupported, Reason: "cannot receive direct messages"}}
		}
		dm := wire.Frame{T: wire.FrameDM, From: s.name, To: to.name, ID: f.ID, Text: f.Text}
		if to != s {
			fr.inboxAppend(to, dm)
		}
		s.ids[f.ID] = fr.inboxAppend(s, dm)
	case wire.FramePing:
		if r == nil {
			return []*wire.Frame{notIn}
		}
		var out []*wire.Frame
		if !fr.noTail {
			out = r.events(f.Last+1, min(uint64(len(r.log)), f.Last+64))
		}
		return append(out, &wire.Frame{T: wire.FramePong, Room: r.name, Seq: uint64(len(r.log)), Epoch: r.epoch})
	case wire.FrameRepair:
		if r == nil {
			return []*wire.Frame{notIn}
		}
		return r.events(f.FromSeq, f.ToSeq)
	case wire.FrameJoin:
		return fr.join(s, f)
	case wire.FramePart:
		out := []*wire.Frame{{T: wire.FrameParted, Room: f.Room}}
		if r != nil && r != s.inbox {
			delete(r.members, s.name)
			out[0].Room = r.name
			fr.write(s.addr, out)
			fr.announce(r, wire.Frame{T: wire.FrameLeave, From: s.name, Reason: "part"})
			return nil
		}
		return out
	case wire.FrameRooms:
		var keys []string
		for k, x := range fr.rooms {
			if len(x.members) > 0 || x.topic != "" || k == wire.RoomMain {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var out []*wire.Frame
		for i, k := range keys {
			x := fr.rooms[k]
			out = append(out, &wire.Frame{T: wire.FrameRoom, Room: x.name, Count: uint64(len(x.members)), Topic: x.topic, Limit: x.limit, Locked: x.pass != "", More: i < len(keys)-1})
		}
		return out
	case wire.FrameWho:
		x := fr.rooms[roomKey(f.Room)]
		if x == nil || (x.pass != "" && x.members[s.name] == nil) {
			return []*wire.Frame{{T: wire.FrameError, Room: f.Room, Code: wire.CodeNotInRoom, Reason: "locked"}}
		}
		var names []string
		for n := range x.members {
			names = append(names, n)
		}
		sort.Strings(names)
		var out []*wire.Frame
		for i := 0; i < len(names) || i == 0; i += 2 {
			out = append(out, &wire.Frame{T: wire.FrameMembers, Room: x.name, Names: names[i:min(i+2, len(names))], More: i+2 < len(names)})
		}
		return out
	case wire.FrameQuit:
		delete(fr.byToken, s.token)
		delete(fr.byAddr, s.addr.String())
		fr.write(s.addr, []*wire.Frame{{T: wire.FrameBye, Room: wire.RoomMain}})
		for _, x := range fr.rooms {
			if x.members[s.name] != nil {
				delete(x.members, s.name)
				fr.announce(x, wire.Frame{T: wire.FrameLeave, From: s.name, Reason: "quit"})
			}
		}
	}
	return nil
}

// announce broadcasts a join or leave; batched (a big room's form) when
// fr.batch is set.
func (fr *fakeRelay) announce(r *fakeRoom, f wire.Frame) {
	if fr.batch {
		f.Names, f.Count = []string{f.From, "x1", "x2"}, 10
	}
	fr.broadcast(r, f, nil)
}

func roomKey(name string) string {
	if name == wire.RoomMain {
		return name
	}
	_, k, _ := wire.CanonicalRoom(name)
	return k
}

// memberRoom is the room named name that s is in (its inbox for "@").
func (fr *fakeRelay) memberRoom(s *fakeSession, name string) *fakeRoom {
	if name == wire.Inbox {
		return s.inbox
	}
	r := fr.rooms[roomKey(name)]
	if r == nil || r.members[s.name] == nil {
		return nil
	}
	return r
}

func (fr *fakeRelay) inboxAppend(s *fakeSession, f wire.Frame) uint64 {
	r := s.inbox
	f.Room, f.Epoch, f.Seq = wire.Inbox, r.epoch, uint64(len(r.log)+1)
	r.log = append(r.log, f)
	fr.deliver(s, &f)
	return f.Seq
}

// welcomes are the welcome for main (with the token) and, after a resume,
// one for each other room s is in, and the inbox's (revision 1); after a
// hello, main's backlog.
func (fr *fakeRelay) welcomes(s *fakeSession, hello bool) []*wire.Frame {
	main := fr.rooms[wire.RoomMain]
	out := []*wire.Frame{{T: wire.FrameWelcome, Room: main.name, Name: s.name, Token: s.token, Epoch: main.epoch, Seq: uint64(len(main.log)), Rev: s.rev, Topic: main.topic}}
	if !hello {
		keys := make([]string, 0, len(fr.rooms))
		for k := range fr.rooms {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if r := fr.rooms[k]; k != wire.RoomMain && r.members[s.name] != nil {
				out = append(out, &wire.Frame{T: wire.FrameWelcome, Room: r.name, Epoch: r.epoch, Seq: uint64(len(r.log)), Topic: r.topic})
			}
		}
	}
	if s.inbox != nil {
		out = append(out, &wire.Frame{T: wire.FrameWelcome, Room: wire.Inbox, Epoch: s.inbox.epoch, Seq: uint64(len(s.inbox.log))})
	}
	if hello {
		out = append(out, main.backlog(20)...)
	}
	var kept []*wire.Frame
	for _, f := range out {
		if fr.drop == nil || !fr.drop(s.name, f) {
			kept = append(kept, f)
		}
	}
	return kept
}

func (fr *fakeRelay) join(s *fakeSession, f *wire.Frame) []*wire.Frame {
	refuse := func(code string) []*wire.Frame {
		return []*wire.Frame{{T: wire.FrameError, Room: f.Room, Code: code, Reason: "refused: " + code}}
	}
	if _, _, err := wire.CanonicalRoom(f.Room); err != nil && f.Room != wire.RoomMain {
		return refuse(wire.CodeRoomInvalid)
	}
	r := fr.room(f.Room)
	if r.members[s.name] != nil {
		return []*wire.Frame{{T: wire.FrameWelcome, Room: r.name, Epoch: r.epoch, Seq: uint64(len(r.log)), Topic: r.topic}}
	}
	switch {
	case r.pass != "" && f.Key != r.pass:
		return refuse(wire.CodeBadKey)
	case r.limit > 0 && uint64(len(r.members)) >= r.limit:
		return refuse(wire.CodeRoomFull)
	}
	out := append([]*wire.Frame{{T: wire.FrameWelcome, Room: r.name, Epoch: r.epoch, Seq: uint64(len(r.log)), Topic: r.topic}}, r.backlog(20)...)
	fr.deliver(s, out...)
	r.members[s.name] = s
	fr.announce(r, wire.Frame{T: wire.FrameJoin, From: s.name})
	return nil
}

// members lists a room's members' names.
func (fr *fakeRelay) members(room string) []string {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	r := fr.rooms[roomKey(room)]
	if r == nil {
		return nil
	}
	var names []string
	for n := range r.members {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
