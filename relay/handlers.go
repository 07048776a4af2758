package relay

import (
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"

	"go.uber.org/zap"
)

// opSpec is one row of the handler table. The validation rules live in its
// fields and are checked by dispatch before the handler runs (ergo's
// commands.go), so handlers contain only their own logic.
type opSpec struct {
	handle func(s *Server, g *datagram, req wire.Request, m *Member, now time.Time)
	// needsMember: the sender's address must hold a session; otherwise the
	// datagram is dropped as not_logged_in (after noMember, if set).
	needsMember bool
	// ownName: the request's name field must be the sender's own name;
	// otherwise it is dropped as impersonation.
	ownName bool
	// noMember, if set, is tried when needsMember fails; it reports whether
	// it handled the datagram.
	noMember func(s *Server, g *datagram, now time.Time) bool
}

// classicOps is the classic handler table, indexed by verb: an array, not
// a map, since every datagram looks its verb up (the parser refuses verbs
// without a row).
var classicOps = [256]opSpec{
	wire.VerbLogin: {handle: (*Server).handleLogin},
	wire.VerbChat:  {handle: (*Server).handleChat, needsMember: true, ownName: true},
	wire.VerbQuit:  {handle: (*Server).handleQuit, needsMember: true, ownName: true, noMember: (*Server).repeatQuit},
}

// dispatch parses one datagram and runs its handler at now. Garbage is
// counted, never answered.
func (s *Server) dispatch(g *datagram, now time.Time) {
	if wire.IsV2((*g.buf)[:g.n]) {
		s.dispatchV2(g, now)
		return
	}
	if s.cfg.DisableClassic {
		s.obs.DatagramDropped(DropClassicOff)
		return
	}
	// req aliases the buffer, which lives until the handler returns:
	// whatever is kept is copied (Registry.Join, room.append, chatLine).
	req, err := wire.ParseClassicInPlace((*g.buf)[:g.n])
	if err != nil {
		s.obs.DatagramDropped(dropReason(err))
		return
	}
	op := classicOps[req.Verb]
	var m *Member
	if op.needsMember {
		if m = s.reg.Lookup(g.from); m == nil || m.Proto != ProtoClassic {
			if op.noMember == nil || !op.noMember(s, g, now) {
				s.obs.DatagramDropped(DropNotLoggedIn)
			}
			return
		}
		if op.ownName && !sameName(m, req.Name) {
			s.obs.DatagramDropped(DropImpersonate)
			s.log.Debug("request names another member", zap.Stringer("from", g.from), zap.String("member", m.Name))
			return
		}
		m.touch(now)
	}
	op.handle(s, g, req, m, now)
}

// join logs a member in, unless its IP is banned for too many refused
// logins; a refusal counts towards that ban.
func (s *Server) join(name, proto, token string, g *datagram, now time.Time) (*Member, bool, error) {
	ip := g.from.Addr()
	if s.flood.LoginBanned(ip) {
		return nil, false, ErrBanned
	}
	if s.reg.Lookup(g.from) == nil { // a new login, not a repeat: the operator's bans and lockdown
		if _, key, err := wire.CanonicalName(name); err == nil {
			if code, reason, ok := s.admit(key, ip, now); !ok {
				return nil, false, loginRefusal{code: code, reason: reason}
			}
		}
	}
	m, repeat, err := s.reg.Join(name, proto, token, g.from, g.local, now)
	if err != nil {
		s.loginRefused(ip)
	}
	return m, repeat, err
}

// sameName reports whether name refers to m (by PRECIS compare key).
func sameName(m *Member, name string) bool {
	if name == m.Name {
		return true
	}
	_, key, err := wire.CanonicalName(name)
	return err == nil && key == m.Key
}

func (s *Server) handleLogin(g *datagram, req wire.Request, _ *Member, now time.Time) {
	m, repeat, err := s.join(req.Name, ProtoClassic, "", g, now)
	if err != nil {
		reason, result := s.words().refusal(err)
		s.obs.Login(result)
		s.out.Reply(g.from, g.local, []byte(reason))
		s.log.Debug("login refused", zap.Stringer("from", g.from), zap.String("result", result))
		return
	}
	if repeat {
		s.out.Send(m, []byte(wire.ReplyOK))
		s.obs.Login(LoginRepeat)
		return
	}
	// The OK is queued before m is in main, in one step: every event m
	// receives comes after its OK, and by the time m has its OK it is in
	// the room, so a login right after it is announced to m.
	others, _ := s.enter(s.main, m, func() { s.out.Queue(m, []byte(wire.ReplyOK)) })
	s.obs.Login(LoginOK)
	s.log.Info("login", zap.String("name", m.Name), zap.Stringer("addr", m.Addr()), zap.String("proto", m.Proto))
	s.announce(s.main, others, m, wire.FrameJoin, "", classicLine(s.words().Join, m.Name), KindJoin)
	s.saveSession(m)
}

func (s *Server) handleChat(g *datagram, req wire.Request, m *Member, now time.Time) {
	if v := s.flood.AllowChat(m.Key); !v.Allowed() {
		s.floodDrop(v, "session", m.Name)
		s.throttle(m, v, 0, now)
		return
	}
	if reason, muted := s.mutedIn(m, wire.RoomMain, now); muted {
		s.obs.DatagramDropped(DropMuted)
		s.out.Send(m, classicLine("%s", reason))
		return
	}
	if wire.CheckText(req.Text) != nil {
		s.obs.DatagramDropped(DropControlChars)
		s.out.Send(m, []byte(s.words().refusedControl))
		return
	}
	if ce := s.log.Check(zap.DebugLevel, "chat"); ce != nil { // no fields built unless logged
		ce.Write(zap.String("name", m.Name), zap.Int("bytes", len(req.Text)))
	}
	if !s.broadcast(s.main, &wire.Frame{T: wire.FrameChat, From: m.Name, Text: req.Text}, s.chatLine(m.Name, req.Text), m, KindChat) {
		s.obs.DatagramDropped(DropUnavailable)
		s.out.Send(m, classicLine("%s", s.words().unavailable))
	}
}

func (s *Server) handleQuit(g *datagram, _ wire.Request, m *Member, now time.Time) {
	s.out.Send(m, []byte(wire.ReplyExit))
	s.quit(m, now)
}

// repeatQuit answers a `Q` from an address that quit within quitMemory:
// the first EXIT may have been lost.
func (s *Server) repeatQuit(g *datagram, now time.Time) bool {
	if !s.reg.RecentlyQuit(g.from, now) {
		return false
	}
	s.out.Reply(g.from, g.local, []byte(wire.ReplyExit))
	return true
}

// tellRemoved tells a member who was removed by the relay why: a classic
// member gets an admin notice and EXIT, a v2 member an error frame and bye.
func (s *Server) tellRemoved(m *Member, why string) {
	if m.Proto == ProtoV2 {
		s.out.SendFrames(m, [][]byte{
			wire.AppendFrame(nil, &wire.Frame{T: wire.FrameError, Room: s.main.name, Code: wire.CodeRemoved, Reason: why}),
			wire.AppendFrame(nil, &wire.Frame{T: wire.FrameBye, Room: s.main.name}),
		})
		return
	}
	s.out.Send(m, classicLine(s.words().Admin, why))
	s.out.Send(m, []byte(wire.ReplyExit))
}

// Notice sends an administrator's notice to main, the room every member
// starts in (and classic members never leave). It returns the number of
// members it was sent to. text must pass CheckText.
func (s *Server) Notice(text string) (int, error) { return s.NoticeRoom(wire.RoomMain, text) }

// NoticeRoom sends an administrator's notice to one room. It returns the
// number of members it was sent to, or ErrNoRoom.
func (s *Server) NoticeRoom(room, text string) (int, error) {
	if err := wire.CheckText(text); err != nil {
		return 0, err
	}
	r := s.roomNamed(room)
	if r == nil {
		return 0, ErrNoRoom
	}
	members := r.Members()
	s.broadcastTo(r, members, &wire.Frame{T: wire.FrameNotice, Text: text}, classicLine(s.words().Admin, text), nil, KindNotice)
	s.out.Flush()
	s.log.Info("admin notice", zap.String("room", r.name), zap.Int("members", len(members)), zap.String("text", text))
	return len(members), nil
}

// roomNamed returns the room called name (by compare key), or nil.
func (s *Server) roomNamed(name string) *room {
	_, key, err := wire.CanonicalRoom(name)
	if err != nil {
		return nil
	}
	return s.rooms.get(key)
}

// Kick removes the member called name: it receives an admin notice with the
// reason and then EXIT; the others receive a notice. It returns
// ErrNoMember if nobody has that name.
func (s *Server) Kick(name, reason string) (*Member, error) {
	if err := wire.CheckText(reason); err != nil {
		return nil, err
	}
	m := s.reg.ByName(name)
	if m == nil || !s.remove(m, s.cfg.Now()) {
		return nil, ErrNoMember
	}
	if reason == "" {
		reason = "-"
	}
	s.log.Info("admin kick", zap.String("name", m.Name), zap.Stringer("addr", m.Addr()), zap.String("reason", reason))
	s.tellRemoved(m, formatf(s.words().kickedSelf, reason))
	for _, r := range m.left { // a kick is announced with its reason, never in a batch
		s.broadcast(r, &wire.Frame{T: wire.FrameLeave, From: m.Name, Reason: reason}, classicLine(s.words().Kicked, m.Name, reason), m, KindLeave)
		s.rooms.dropIfEmpty(r)
	}
	s.out.Flush()
	return m, nil
}
