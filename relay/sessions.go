package relay

import (
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// Sessions that outlive their relay (Config.Sessions). The relay writes a
// session's record when it begins, joins or parts a room, or moves, and
// deletes it when the session ends; a graceful shutdown ends every session
// (members are told), a crash ends none. Then:
//
//   - a v2 client that resumes with a token this relay does not know is
//     looked up in the store and adopted (the same session: its ID, name,
//     rooms), and repairs what it missed from the rooms' logs;
//   - a relay that starts takes back its classic members (they cannot
//     resume: they are members at their address, as before the crash).

// record returns m's session record.
func (s *Server) record(m *Member) SessionRecord {
	d := m.Dest()
	rec := SessionRecord{ID: m.ID, Name: m.Name, Proto: m.Proto, Rev: m.rev.Load(), Addr: d.Addr.String(), Node: s.cfg.Node}
	if d.Local.IsValid() {
		rec.Local = d.Local.String()
	}
	for _, r := range m.roomList() {
		rec.Rooms = append(rec.Rooms, r.name)
	}
	return rec
}

// saveSession writes m's record, if sessions are stored. A failure is
// logged: the session goes on, but would not survive this relay.
func (s *Server) saveSession(m *Member) {
	if s.cfg.Sessions == nil {
		return
	}
	if err := s.cfg.Sessions.Put(s.record(m), m.Token); err != nil {
		s.log.Warn("session not stored: it would not survive this relay", zap.String("name", m.Name), zap.Error(err))
	}
}

// forgetSession deletes m's record, if sessions are stored.
func (s *Server) forgetSession(m *Member) {
	if s.cfg.Sessions != nil {
		s.cfg.Sessions.Delete(m.ID, m.Token)
	}
}

// adopt looks a v2 resume's token up in the store and takes the session
// over. It returns the member, or nil with handled true if it answered the
// resume (a refusal), or nil and false if the store does not know the token
// either.
func (s *Server) adopt(g *datagram, f *wire.Frame, now time.Time) (m *Member, handled bool) {
	if s.cfg.Sessions == nil || f.Token == "" {
		return nil, false
	}
	refuse := func(code, reason string) {
		s.obs.Login(code)
		s.replyV2(g, &wire.Frame{T: wire.FrameRefused, Room: wire.RoomMain, Code: code, Reason: reason})
	}
	rec, ok, err := s.cfg.Sessions.ByToken(f.Token)
	if err != nil {
		refuse(LoginUnavailable, s.words().unavailable)
		return nil, true
	}
	if !ok || rec.Proto != ProtoV2 {
		return nil, false
	}
	if _, key, err := wire.CanonicalName(rec.Name); err == nil {
		if b, banned := s.mod().banned(key, g.from.Addr(), now); banned {
			refuse(LoginBanned, s.modWords().bannedReason(b, now))
			return nil, true
		}
	}
	m, err = s.reg.Adopt(rec, f.Token, g.from, g.local, now)
	if err != nil {
		reason, result := s.words().refusal(err)
		refuse(result, reason)
		return nil, true
	}
	m.rev.Store(min(rec.Rev, wire.Rev))
	if m.rev.Load() >= 1 {
		// A new inbox: direct messages that were on their way to the old
		// relay are lost with it (its inbox lived in its memory).
		if log, err := s.cfg.Logs.Open(wire.Inbox + m.ID); err == nil {
			m.inbox.Store(newInbox(log, m))
		} else {
			m.rev.Store(0)
		}
	}
	m.v2.base.Store(s.main.log.Latest())
	s.enterRooms(m, rec.Rooms)
	s.log.Info("session adopted", zap.String("name", m.Name), zap.Stringer("addr", g.from), zap.String("from_node", rec.Node))
	return m, false
}

// enterRooms puts an adopted or restored member back in its rooms, as of
// each room's latest event, with no join announced: for the others it
// never left. A room that cannot be opened now is left out (logged).
func (s *Server) enterRooms(m *Member, rooms []string) {
	for _, name := range rooms {
		for range 2 { // a room removed as we entered it is looked up once more
			r := s.main
			if name != wire.RoomMain {
				var err error
				if r, err = s.openRoom(name); err != nil {
					s.log.Warn("a resumed session's room cannot be opened", zap.String("name", m.Name), zap.String("room", name), zap.Error(err))
					break
				}
			}
			_, _, gone := r.add(m, r.log.Latest())
			if !gone {
				break
			}
		}
	}
}

// restoreClassic takes back the classic members this node's store holds
// (after a crash): each is a member again at its address, in main, and
// receives from now on without logging in again.
func (s *Server) restoreClassic() {
	if s.cfg.Sessions == nil {
		return
	}
	recs, err := s.cfg.Sessions.Classic(s.cfg.Node)
	if err != nil {
		s.log.Warn("classic sessions not restored: they must log in again", zap.Error(err))
		return
	}
	now := s.cfg.Now()
	n := 0
	for _, rec := range recs {
		from, err := netip.ParseAddrPort(rec.Addr)
		if err != nil {
			continue
		}
		var local netip.Addr
		if rec.Local != "" {
			local, _ = netip.ParseAddr(rec.Local)
		}
		m, err := s.reg.Adopt(rec, "", from, local, now)
		if err != nil {
			s.log.Warn("classic session not restored", zap.String("name", rec.Name), zap.Error(err))
			s.cfg.Sessions.Delete(rec.ID, "")
			continue
		}
		s.enterRooms(m, []string{wire.RoomMain})
		s.saveSession(m) // held by this process now: refreshed, and deleted when it ends
		n++
	}
	if n > 0 {
		s.log.Info("classic members restored", zap.Int("members", n))
	}
}
