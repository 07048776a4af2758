package client

import (
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// onDatagram handles what one socket reader handed over: a v2 datagram's
// frames, one by one, or a read error (ErrUnreachable: nothing listens at
// the relay's address). Garbage, and anything from a replaced socket or
// after the end, is dropped unanswered.
//
// An unreachable relay that has not answered the handshake under way is
// given up at once while Dial waits (ErrUnreachable, or the next address),
// and after login when there are other addresses to fail over to. A member
// does not leave its relay for it: silence (DeadAfter) decides that, as a
// relay that restarts is unreachable for a moment.
func (c *Client) onDatagram(p inbound) {
	if c.st == stEnded || p.gen != c.sock.gen {
		return // the session is over, or an old socket's
	}
	if p.err != nil {
		handshake := c.st == stHello || c.st == stResume
		if handshake && !c.hs.answered && (c.dialing || c.multi()) {
			c.giveUpAddr(c.cfg.Now(), true)
		}
		return
	}
	c.stats.received.Add(1)
	// Context lines (revision 2) are applied whatever the revision: a
	// relay of revision 0 or 1 never sends one; and a datagram may carry
	// up to wire.MaxLinesWide lines (revision 4): a relay below it never
	// sends more than wire.MaxFramesPerDatagram.
	frames, err := wire.DecodeV2Wide(nil, p.data)
	if err != nil {
		return // not v2, or garbage: never answered
	}
	c.lastRecv = c.cfg.Now()
	c.hs.answered = true
	var delivered []Event
	for i := range frames {
		delivered = c.onFrame(&frames[i], delivered)
		if c.exit || c.st == stEnded {
			break
		}
	}
	if f := c.removed; f != nil {
		// Removed, and no parted for main came with it: removed from the
		// relay (the bye, if it came, was taken as this too).
		c.removed = nil
		c.emit(Event{Type: EventError, Room: f.Room, Code: f.Code, Reason: f.Reason})
		if c.st != stQuitting && c.st != stEnded {
			c.end(&KickedError{Reason: f.Reason})
		}
	}
}

// onFrame handles one frame; delivered is scratch space for room events.
func (c *Client) onFrame(f *wire.Frame, scratch []Event) []Event {
	now := c.cfg.Now()
	switch f.T {
	case wire.FrameRetry:
		if (c.st == stHello || c.st == stResume) && f.Cookie != "" {
			c.cookie = f.Cookie
			c.hs.next = time.Time{} // again at once, with the cookie
		}
	case wire.FrameWelcome:
		c.onWelcome(f, now)
	case wire.FrameRefused:
		c.onRefused(f)
	case wire.FrameChat, wire.FrameJoin, wire.FrameLeave, wire.FrameTimeout, wire.FrameNotice, wire.FrameDM:
		r := c.roomOf(f.Room)
		if r == nil || !c.sameEpoch(r, f.Epoch) {
			return scratch
		}
		if f.History && c.historyEvent(r, f) {
			return scratch // a page of history asked for: not an event of the stream
		}
		if (f.T == wire.FrameChat || f.T == wire.FrameDM) && f.ID != 0 && f.From == c.name && f.Seq > r.base && c.token != "" {
			c.out.ack(f.ID) // our echo
		}
		scratch = r.seq.add(f, scratch[:0])
		c.deliver(r, scratch)
	case wire.FrameMissed:
		r := c.roomOf(f.Room)
		if r == nil || !c.sameEpoch(r, f.Epoch) {
			return scratch
		}
		scratch = r.seq.missed(f.FromSeq, f.ToSeq, scratch[:0])
		c.deliver(r, scratch)
	case wire.FrameAck:
		// The message's own room, whatever the ack names.
		if m := c.out.take(f.ID); m != nil && f.Seq != 0 {
			r := c.byKey[m.room]
			if m.to != "" {
				r = c.inbox
			}
			if r != nil && !r.joining {
				r.seq.learn(f.Seq) // our message exists: fetch it if we lack it
			}
		}
	case wire.FramePong:
		if r := c.roomOf(f.Room); r != nil && c.st == stMember && c.sameEpoch(r, f.Epoch) {
			r.seq.learn(f.Seq)
		}
	case wire.FrameMembers:
		c.onMembers(f)
	case wire.FrameRoom:
		c.onRoomEntry(f)
	case wire.FrameParted:
		c.onParted(f)
	case wire.FrameBye:
		if c.removed != nil {
			return scratch // removed from the relay: onDatagram ends the session
		}
		switch c.st {
		case stQuitting:
			c.exit = true
		case stMember, stResume:
			c.end(ErrEnded)
		}
	case wire.FrameThrottled:
		d := time.Duration(f.RetryMS) * time.Millisecond
		c.out.throttle(now.Add(d))
		c.emit(Event{Type: EventThrottled, Room: f.Room, RetryAfter: d, ID: f.ID, Reason: f.Reason})
	case wire.FrameRestart:
		if f.Epoch == "" || f.Epoch == c.epoch || c.isOurEpoch(f.Epoch) {
			c.relayRestarting()
		}
	case wire.FrameError:
		c.onErrorFrame(f)
	case wire.FrameHistoryEnd:
		c.onHistoryEnd(f)
	}
	return scratch
}

// isOurEpoch reports whether epoch is the current epoch of one of our
// streams.
func (c *Client) isOurEpoch(epoch string) bool {
	for _, r := range c.streams() {
		if r.epoch != "" && r.epoch == epoch {
			return true
		}
	}
	return false
}

// sameEpoch reports whether an event of epoch belongs to r's sequence. An
// unknown epoch in a room we are in means the relay restarted without our
// seeing its restart frame: log in again. A room still joining takes only
// what its welcome starts; the inbox, whose welcome may be lost, takes the
// first epoch it sees (a new session's inbox starts empty).
func (c *Client) sameEpoch(r *room, epoch string) bool {
	switch {
	case epoch == "":
		return false
	case r == c.inbox && r.joining && c.st == stMember && !c.oldEpoch[epoch]:
		r.welcomed(&wire.Frame{Room: wire.Inbox, Epoch: epoch}, c.oldEpoch)
		return true
	case r.joining || r.epoch == "":
		return epoch == r.epoch
	case c.st == stEnded || c.st == stQuitting:
		return epoch == r.epoch
	case epoch == r.epoch:
		return true
	case c.oldEpoch[epoch]:
		return false // a straggler from before a restart, or from a room we left
	case c.st == stHello:
		return false // logging in again already
	}
	c.relayRestarting()
	return false
}

// deliver queues room events delivered by r's sequencer and reacts to our
// own removal.
func (c *Client) deliver(r *room, evs []Event) {
	for _, e := range evs {
		e.Room = r.name
		if (e.Type == EventChat || e.Type == EventDM) && e.From == c.name {
			e.Self = true
		}
		if e.Type == EventNotice && e.Topic != "" && !e.History {
			r.topic = e.Topic
		}
		c.emit(e)
		if e.From != c.name || e.Seq <= r.base || e.History || e.Batched() {
			continue
		}
		switch {
		case e.Type == EventLeave && isKick(e.Reason) && c.st != stQuitting:
			if r.key == wire.RoomMain {
				c.end(&KickedError{Reason: e.Reason})
				return
			}
			// Removed from this room only.
			c.lostRoom(r, codeRemoved, e.Reason)
			return
		case e.Type == EventTimeout && c.st == stMember:
			// The relay evicted us for silence; the token is gone, so the
			// resume is refused and we log in again.
			c.startResume("the relay timed us out")
		}
	}
}
