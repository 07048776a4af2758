package relay

import (
	"go.uber.org/zap"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// Following: when a room's log is shared with other relays (RoomFollower),
// this node hands its members the events the others append, in the log's
// order. Its own appends reach the feed twice, from broadcast and from the
// log; room.deliver takes each seq once, whichever comes first, so a
// member sees one order on every node and nothing twice.

// follow starts following r's log if it is shared. It is called with
// rs.mu held (room.unfollow is guarded by it) when r is created, and for
// every room when the relay starts serving.
func (s *Server) follow(r *room) {
	f, ok := r.log.(RoomFollower)
	if !ok || r.unfollow != nil || s.closing.Load() {
		return
	}
	r.feed.mu.Lock()
	after := r.feed.next - 1
	r.feed.mu.Unlock()
	stop, err := f.Follow(after, func(seq uint64, line []byte, behind uint64) {
		s.logEvent(r, seq, line, behind)
	})
	if err != nil {
		// Open succeeded a moment ago, so the store is there: a second
		// try at the next join or start, and the log says why meanwhile.
		s.log.Warn("cannot follow a room's log: this node's members miss other nodes' events", zap.String("room", r.name), zap.Error(err))
		return
	}
	r.unfollow = stop
}

// followAll follows every room (at the start of Serve: rooms opened before
// it, main and configured ones, are followed from then on).
func (s *Server) followAll() {
	s.rooms.mu.Lock()
	defer s.rooms.mu.Unlock()
	for _, r := range s.rooms.byKey {
		s.follow(r)
	}
}

// unfollowAll stops following every room (Shutdown).
func (s *Server) unfollowAll() {
	s.rooms.mu.Lock()
	var stops []func()
	for _, r := range s.rooms.byKey {
		if r.unfollow != nil {
			stops = append(stops, r.unfollow)
			r.unfollow = nil
		}
	}
	s.rooms.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

// logEvent hands one event from r's log to this node's members, unless
// this node delivered it already. The classic line is rendered from the
// frame, in this node's wording; the member named as the event's sender is
// its except, as in broadcast.
func (s *Server) logEvent(r *room, seq uint64, line []byte, behind uint64) {
	r.lag.Store(behind)
	if r.undelivered(seq) {
		s.handOver(r, seq, line)
		r.unflushed.Add(1)
	}
	// While the log holds more events behind this one they come at once:
	// queue them, and send them together (several to a v2 datagram) with
	// the last, or every followFlushEvery events. The last may be one this
	// node delivered already (its own, stored after one from another node
	// that was still on its way: it waited for that one, and left with it
	// while the log said one more was behind): what waits goes now all the
	// same.
	if n := r.unflushed.Load(); n > 0 && (behind == 0 || n >= followFlushEvery) {
		r.unflushed.Store(0)
		s.out.Flush()
	}
}

// handOver hands the event seq of r's log, line, to this node's members.
func (s *Server) handOver(r *room, seq uint64, line []byte) {
	var f wire.Frame
	if !wire.DecodeFrameInPlace(line, &f) {
		s.log.Warn("a room's log holds an event that is not a frame", zap.String("room", r.name), zap.Uint64("seq", seq))
		f = wire.Frame{} // still delivered (as nothing) so that the feed moves on
	}
	members := r.Members()
	var classic []byte
	if r == s.main {
		classic = s.classicFor(&f)
	}
	// The member named as the event's sender, in any room: a classic one
	// gets no classic line, as in broadcast, and a v2 one of revision 3
	// gets its chats' rows with their ids, its acknowledgement (a shared
	// log may hand this node its own member's chat before the handler that
	// stored it delivers it).
	var except *Member
	if f.From != "" {
		for _, m := range members {
			if m.Name == f.From {
				except = m
				break
			}
		}
	}
	r.deliver(seq, Event{Members: members, V2: line, Classic: classic, Except: except}, s.out)
}

// flushFollowed sends what a follower queued while its log said more was
// behind, if no more came (a consumer moving to another server after its
// own died): the sweeper calls it, so such events wait a second at most.
func (s *Server) flushFollowed() {
	s.rooms.mu.Lock()
	pending := false
	for _, r := range s.rooms.byKey {
		if r.unflushed.Load() > 0 {
			pending = true
			r.unflushed.Store(0)
		}
	}
	s.rooms.mu.Unlock()
	if pending {
		s.out.Flush()
	}
}

// followFlushEvery bounds the events of a log's backlog handed to the
// fan-out before they are sent.
const followFlushEvery = 64

// classicFor renders a room event as the classic line this node would have
// sent with it; nil for events classic members do not get.
func (s *Server) classicFor(f *wire.Frame) []byte {
	w := s.words()
	switch f.T {
	case wire.FrameChat:
		return s.chatLine(f.From, f.Text)
	case wire.FrameJoin, wire.FrameLeave:
		join := f.T == wire.FrameJoin
		if f.Count > 1 {
			return classicLine("%s", w.Batch(join, f.Names, int(f.Count)))
		}
		switch {
		case join:
			return classicLine(w.Join, f.From)
		case f.Reason == "" || f.Reason == "part" || f.Reason == "quit":
			return classicLine(w.Leave, f.From)
		default:
			return classicLine(w.Kicked, f.From, f.Reason)
		}
	case wire.FrameTimeout:
		return classicLine(w.TimedOut, f.From)
	case wire.FrameNotice:
		return classicLine(w.Admin, f.Text)
	}
	return nil
}

// LogLag returns how many events the shared logs of this node's rooms held,
// when they last handed one over, beyond it: events stored (by any node)
// that this node's members have not been handed yet. 0 when no log is
// shared.
func (s *Server) LogLag() uint64 {
	s.rooms.mu.Lock()
	defer s.rooms.mu.Unlock()
	var n uint64
	for _, r := range s.rooms.byKey {
		n += r.lag.Load()
	}
	return n
}
