package client

import (
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// onTimers sends whatever is due at now.
func (c *Client) onTimers(now time.Time) {
	var frames []*wire.Frame
	switch c.st {
	case stHello, stResume:
		if now.Before(c.hs.next) {
			break
		}
		// While Dial waits, and after login with several addresses, an
		// address has a bounded chance before the next is tried; one
		// address alone is resumed, or logged in to again, for ever.
		perAddr := c.dialing || c.multi()
		if perAddr && c.handshakeSpent(now) {
			c.giveUpAddr(now, false)
			c.onTimers(now)
			return
		}
		frames = append(frames, c.handshakeFrame())
		c.hs.sent++
		if perAddr {
			c.hs.next = now.Add(c.cfg.HelloEvery)
		} else {
			c.hs.next = now.Add(c.hs.bo.next(c.cfg.Rand))
		}
	case stMember:
		if now.Sub(c.lastRecv) >= c.cfg.DeadAfter {
			if c.multi() {
				c.giveUpAddr(now, false) // resume at the next address
			} else {
				c.startResume("no answer from the relay")
			}
			c.onTimers(now)
			return
		}
		for _, m := range c.out.due(now) {
			if m.to != "" {
				frames = append(frames, &wire.Frame{T: wire.FrameMsg, To: m.to, ID: m.id, Text: m.text})
			} else {
				frames = append(frames, &wire.Frame{T: wire.FrameChat, Room: c.byKey[m.room].name, ID: m.id, Text: m.text})
			}
			c.stats.chats.Add(1)
			if m.sent > 1 {
				c.stats.retransmits.Add(1)
			}
		}
		frames = c.requestFrames(now, frames)
		for _, r := range c.streams() {
			frames = c.repairFrames(r, now, frames)
		}
		if !now.Before(c.hbNext) || len(frames) > 0 && now.Add(c.cfg.HeartbeatEvery/2).After(c.hbNext) {
			// Pings ride along when they are nearly due anyway: one per
			// room, and one for the inbox, each with its own last.
			for _, r := range c.streams() {
				if !r.joining || r == c.inbox {
					frames = append(frames, &wire.Frame{T: wire.FramePing, Room: r.name, Last: r.seq.last})
				}
			}
			c.hbNext = now.Add(c.cfg.HeartbeatEvery)
		}
	case stQuitting:
		if !now.Before(c.quit.until) {
			c.exit = true
			return
		}
		if !now.Before(c.quit.next) {
			frames = append(frames, &wire.Frame{T: wire.FrameQuit, Room: c.cfg.Room})
			c.quit.next = now.Add(quitWait)
		}
	}
	c.sendFrames(frames)
}

// repairFrames arms, fires and backs off r's gap repair.
func (c *Client) repairFrames(r *room, now time.Time, frames []*wire.Frame) []*wire.Frame {
	if r.joining || !r.seq.open() {
		r.repair.armed = false
		return frames
	}
	if !r.repair.armed {
		r.repair.armed = true
		r.repair.bo.reset()
		r.repair.last = r.seq.last
		r.repair.due = now.Add(repairMinDelay + time.Duration(c.cfg.Rand.Int64N(int64(repairMaxDelay-repairMinDelay))))
		return frames
	}
	if now.Before(r.repair.due) {
		return frames
	}
	if r.seq.last > r.repair.last {
		r.repair.bo.reset() // progress: the next request comes soon again
		r.repair.last = r.seq.last
	}
	for _, g := range r.seq.gaps(repairRanges) {
		for from := g.from; from <= g.to; from += maxRepairSpan {
			frames = append(frames, &wire.Frame{T: wire.FrameRepair, Room: r.name, FromSeq: from, ToSeq: min(g.to, from+maxRepairSpan-1)})
			c.stats.repairs.Add(1)
			if from+maxRepairSpan < from { // overflow guard
				break
			}
		}
	}
	r.repair.due = now.Add(r.repair.bo.next(c.cfg.Rand))
	return frames
}

// sendFrames packs frames into as few datagrams as MaxDatagram and
// wire.MaxFramesPerDatagram allow, and sends them. A hello or resume goes
// alone, so its padding counts.
func (c *Client) sendFrames(frames []*wire.Frame) {
	if len(frames) == 0 || c.sock == nil {
		return
	}
	var b []byte
	n := 0 // frames in b
	flush := func() {
		if n > 0 {
			if c.sock.write(b) == nil {
				c.stats.sent.Add(1)
			}
		}
		b, n = wire.AppendV2Header(b[:0]), 0
	}
	b = wire.AppendV2Header(make([]byte, 0, c.cfg.MaxDatagram))
	for _, f := range frames {
		start := len(b)
		b = wire.AppendFrame(b, f)
		if n > 0 && (len(b) > c.cfg.MaxDatagram || n == wire.MaxFramesPerDatagram) {
			line := append([]byte(nil), b[start:]...)
			b = b[:start]
			flush()
			b = append(b, line...)
		}
		n++
	}
	flush()
}

// nextWake is when onTimers next has something to do.
func (c *Client) nextWake(now time.Time) time.Time {
	t := now.Add(time.Hour)
	earlier := func(u time.Time) {
		if u.Before(t) {
			t = u
		}
	}
	switch c.st {
	case stHello, stResume:
		earlier(c.hs.next)
	case stMember:
		earlier(c.hbNext)
		earlier(c.lastRecv.Add(c.cfg.DeadAfter))
		if d, ok := c.out.deadline(); ok {
			earlier(d)
		}
		for _, r := range c.streams() {
			switch {
			case r.joining || !r.seq.open():
			case r.repair.armed:
				earlier(r.repair.due)
			default:
				earlier(now)
			}
		}
		c.requestWake(earlier)
	case stQuitting:
		earlier(c.quit.next)
		earlier(c.quit.until)
	}
	return t
}
