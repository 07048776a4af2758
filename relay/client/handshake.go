package client

import (
	"strings"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// The handshakes: logging in with hello (Dial, and again after a relay
// restart or a forgotten session) and resuming with the token (after an
// address change, a silent path, or a timeout). Each is a padded hello or
// resume, perhaps a retry with a cookie and the same again with it, then a
// welcome or a refusal. onTimers sends the hellos and resumes on their
// schedule (handshakeFrame); onFrame hands the answers to onWelcome and
// onRefused, and takes a retry's cookie itself.

// minHelloSize is the least size of a hello or resume datagram: pad fills
// them up to it, because the relay answers an address it has not validated
// only with a retry no larger than the request (docs/PROTOCOL.md, address
// validation).
const minHelloSize = 256

// startResume starts resuming the session with its token, sending the
// first resume at once. why is the reason EventReconnecting gives; it is
// emitted unless a resume is already under way or why is empty (the
// caller reports it otherwise).
func (c *Client) startResume(why string) {
	if c.st != stResume && why != "" {
		c.emit(Event{Type: EventReconnecting, Reason: why})
	}
	c.st = stResume
	c.hs.bo.reset()
	c.hs.first, c.hs.next, c.hs.sent, c.hs.answered = c.cfg.Now(), time.Time{}, 0, false
	c.disarmRepairs()
}

// disarmRepairs stops every gap repair until it is needed again.
func (c *Client) disarmRepairs() {
	for _, r := range c.streams() {
		r.repair.armed = false
	}
}

// startRelogin starts a new session with hello after delay, for why
// ("restart" or "unknown_session"), forgetting the token and the cookie.
// The sequence and the outbox stay: onWelcome decides what carries over.
func (c *Client) startRelogin(why string, delay time.Duration) {
	c.st = stHello
	c.relogin = why
	c.token, c.cookie = "", ""
	c.hs.bo.reset()
	c.hs.first = c.cfg.Now().Add(delay)
	c.hs.next, c.hs.sent, c.hs.answered = c.hs.first, 0, false
	c.disarmRepairs()
}

// relayRestarting reacts to a relay that is restarting (a restart frame) or
// has restarted (an unknown epoch): it emits EventRestarting and logs in
// again after 250 ms. While quitting it stops the loop at once, since no bye
// will come; once ended, or already logging in again after a restart, it
// does nothing.
func (c *Client) relayRestarting() {
	if c.st == stQuitting {
		c.exit = true
		return
	}
	if c.st == stEnded || (c.st == stHello && c.relogin == "restart") {
		return
	}
	c.emit(Event{Type: EventRestarting})
	c.startRelogin("restart", 250*time.Millisecond)
}

// onWelcome handles a welcome: the end of a login or a resume, or a
// room's (after a join, or each room's and the inbox's after the session's).
//
// After a hello, the welcome for main (it has the token) takes the token,
// the name as the relay enforced it, the revision the relay speaks and
// main's base seq. A welcome after the first also says what happened: a new
// epoch (EventRestarted) or the same relay having forgotten the session
// (EventNewSession); the unconfirmed messages get new ids in the new
// session and are sent again at once, and the rooms we were in are joined
// again. Dial, if waiting, returns.
//
// After a resume, a welcome for our token reports EventResumed (or
// EventRestarted on a new epoch) and has the messages in flight sent
// again at once. Either way the client becomes a member. Any other welcome
// is a room's: it starts the room's sequence, or says which seq is the
// room's latest (repair fetches what we lack).
func (c *Client) onWelcome(f *wire.Frame, now time.Time) {
	switch {
	case c.st == stHello && f.Token != "" && c.roomKey(f.Room) == wire.RoomMain:
		c.loggedIn(f, now)
	case c.st == stResume && f.Token != "" && f.Token == c.token:
		restarted := c.roomKey(f.Room) == wire.RoomMain && f.Epoch != c.epoch
		if restarted {
			// Cannot happen with a restarted relay (it forgets tokens),
			// but a new epoch is a new sequence whatever the cause.
			c.oldEpoch[c.epoch] = true
			c.epoch = f.Epoch
		}
		if f.Rev != 0 {
			c.rev = min(f.Rev, wire.Rev)
		}
		c.roomWelcome(f)
		if restarted {
			c.emit(Event{Type: EventRestarted, Epoch: f.Epoch})
		} else {
			c.emit(Event{Type: EventResumed})
		}
		c.stats.resumes.Add(1)
		c.out.resendSoon()
		c.becomeMember(now)
	case c.st == stMember || c.st == stResume:
		c.roomWelcome(f)
	}
}

// loggedIn takes the welcome that answers a hello.
func (c *Client) loggedIn(f *wire.Frame, now time.Time) {
	first := c.epoch == ""
	c.token = f.Token
	if f.Name != "" {
		c.name = f.Name
	}
	c.rev = min(f.Rev, wire.Rev)
	main := c.byKey[wire.RoomMain]
	inMain := first || main != nil
	if main == nil {
		main = newRoom(wire.RoomMain, wire.RoomMain)
		c.addRoom(main)
	}
	// After a failover, a relay that did not know the session is named:
	// it is not the one we were with.
	var at string
	if c.fo.moved && c.relogin == wire.CodeUnknownSession {
		at = c.relays[c.cur].name
	}
	switch {
	case first:
	case f.Epoch != c.epoch:
		c.oldEpoch[c.epoch] = true
		c.emit(Event{Type: EventRestarted, Epoch: f.Epoch, Addr: at})
	default:
		// The relay forgot us (or another shares the room's history):
		// what we lack since is repaired, or reported missed.
		c.emit(Event{Type: EventNewSession, Addr: at})
	}
	c.epoch = f.Epoch
	main.joining = true // ours start at this welcome
	main.welcomed(f, c.oldEpoch)
	c.inbox = nil
	if c.rev >= 1 {
		// The inbox is the session's: a new one starts empty, its welcome
		// follows main's.
		c.inbox = newRoom(wire.Inbox, wire.Inbox)
		c.inbox.joining = true
	}
	if !first {
		c.stats.relogins.Add(1)
		c.out.renumber()
		c.rejoinAll(inMain)
	}
	c.becomeMember(now)
	if c.dialing {
		c.dialing = false
		c.dialed <- nil
	}
}

// roomWelcome takes a room's welcome (or the inbox's): the answer to a
// join, a duplicate, or one of the welcomes that follow a resume.
func (c *Client) roomWelcome(f *wire.Frame) {
	r := c.roomOf(f.Room)
	if r == nil {
		return // a late welcome for a room we left
	}
	if r.joining && r != c.inbox && f.Epoch == "" {
		return
	}
	if r.welcomed(f, c.oldEpoch) && !r.quiet && r != c.inbox {
		c.emit(Event{Type: EventJoined, Room: r.name, Topic: r.topic})
	}
	r.quiet = false
}

// becomeMember makes the client a member at now: the next ping is a
// heartbeat away, the relay counts as just heard from, every address may
// be tried again without a round backoff, pending Who and Rooms calls ask
// again at once, and gap repairs are disarmed until they are needed.
func (c *Client) becomeMember(now time.Time) {
	c.st = stMember
	c.relogin = ""
	c.fo.tried, c.fo.moved = 0, false
	c.fo.round.reset()
	c.hbNext = now.Add(c.cfg.HeartbeatEvery)
	c.lastRecv = now
	for _, w := range c.whos {
		w.next = time.Time{}
	}
	if c.roomList != nil {
		c.roomList.next = time.Time{}
	}
	c.disarmRepairs()
}

// onRefused handles a refusal of a hello or resume. A bad cookie is
// dropped and the handshake sent again at once without it; an unknown
// session (to a resume) starts a new login; any other refusal ends the
// session with a *RefusedError, which Dial returns if it is waiting. Other
// states ignore refusals.
func (c *Client) onRefused(f *wire.Frame) {
	err := &RefusedError{Code: f.Code, Reason: f.Reason}
	switch c.st {
	case stHello:
		if f.Code == "bad_cookie" {
			c.cookie, c.hs.next = "", time.Time{}
			return
		}
		c.end(err)
	case stResume:
		switch f.Code {
		case wire.CodeUnknownSession:
			c.startRelogin("unknown_session", 0)
		case "bad_cookie":
			c.cookie, c.hs.next = "", time.Time{}
		default:
			c.end(err)
		}
	}
}

// handshakeFrame is the hello or resume to send now, with the cookie if
// the relay gave one, padded to minHelloSize.
func (c *Client) handshakeFrame() *wire.Frame {
	f := &wire.Frame{T: wire.FrameHello, Room: c.cfg.Room, Name: c.cfg.Name, Cookie: c.cookie, Rev: wire.Rev}
	if c.st == stResume {
		// last is main's (revision 0's meaning); the other rooms are
		// repaired from their own after their welcomes.
		var last uint64
		if m := c.byKey[wire.RoomMain]; m != nil {
			last = m.seq.last
		}
		f = &wire.Frame{T: wire.FrameResume, Room: c.cfg.Room, Token: c.token, Last: last, Cookie: c.cookie}
	}
	pad(f)
	return f
}

// pad fills f.Pad so that f alone makes a datagram of at least
// minHelloSize bytes.
func pad(f *wire.Frame) {
	f.Pad = ""
	n := len(wire.EncodeV2(f)) + len(`,"pad":""`)
	if n < minHelloSize {
		f.Pad = strings.Repeat(".", minHelloSize-n)
	}
}
