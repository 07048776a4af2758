package client

import "github.com/chatrelay/chatrelay/relay/wire"

// seqRange is an inclusive range of room sequence numbers.
type seqRange struct{ from, to uint64 }

// maxBuffered bounds the events held back behind a gap; events further
// ahead are dropped and repaired later.
const maxBuffered = 8192

// maxGapScan bounds how far past the gap's start gaps looks for holes;
// beyond it the last range simply runs to the highest known seq.
const maxGapScan = 4096

// sequencer turns room events, which arrive lost, duplicated and out of
// order, into the room's order with each seq once. It holds back events
// after a gap until the gap is filled or declared missed. It is not safe
// for concurrent use: the client's loop owns it.
type sequencer struct {
	last  uint64                // every seq <= last was delivered or reported missed
	known uint64                // the highest seq known to exist (>= last)
	shown uint64                // the highest seq handed out, backlog included
	buf   map[uint64]wire.Frame // held back: seqs > last+1
	lost  []seqRange            // declared missed by the relay, above last, disjoint
}

func newSequencer(base uint64) *sequencer {
	s := &sequencer{buf: make(map[uint64]wire.Frame)}
	s.reset(base)
	return s
}

// reset starts a new sequence (a first login, or a new epoch) whose events
// up to base are history: they are shown only as backlog.
func (s *sequencer) reset(base uint64) {
	s.last, s.known, s.shown = base, base, 0
	clear(s.buf)
	s.lost = s.lost[:0]
}

// learn records that seq exists (from a pong, an ack or a welcome), which
// opens a gap if it is beyond what we have.
func (s *sequencer) learn(seq uint64) { s.known = max(s.known, seq) }

// open reports whether some seq <= known is neither delivered nor reported.
func (s *sequencer) open() bool { return s.known > s.last }

// add takes one room event and appends what can now be delivered, in
// order, to out.
func (s *sequencer) add(f *wire.Frame, out []Event) []Event {
	seq := f.Seq
	if seq == 0 {
		return out
	}
	if seq <= s.last {
		// Delivered or missed already, or history from before we came.
		if f.History && seq > s.shown {
			s.shown = seq
			return append(out, roomEvent(f, true))
		}
		return out
	}
	s.learn(seq)
	if seq != s.last+1 {
		if _, dup := s.buf[seq]; !dup && (len(s.buf) < maxBuffered || seq < s.maxBuffered()) {
			if len(s.buf) >= maxBuffered {
				delete(s.buf, s.maxBuffered())
			}
			s.buf[seq] = *f
		}
		return out
	}
	out = s.deliver(f, out)
	return s.drain(out)
}

func (s *sequencer) maxBuffered() uint64 {
	var m uint64
	for k := range s.buf {
		m = max(m, k)
	}
	return m
}

// deliver hands out f, the event at last+1.
func (s *sequencer) deliver(f *wire.Frame, out []Event) []Event {
	s.last = f.Seq
	s.shown = max(s.shown, f.Seq)
	return append(out, roomEvent(f, f.History))
}

// missed records the relay's report that from..to are lost for good and
// appends what can now be delivered.
func (s *sequencer) missed(from, to uint64, out []Event) []Event {
	from = max(from, s.last+1)
	if to < from {
		return out
	}
	s.learn(to)
	s.lost = append(s.lost, seqRange{from, to})
	return s.drain(out)
}

// drain delivers held-back events and missed runs that follow last.
func (s *sequencer) drain(out []Event) []Event {
	for {
		next := s.last + 1
		if f, ok := s.buf[next]; ok {
			delete(s.buf, next)
			out = s.deliver(&f, out)
			continue
		}
		if !s.isLost(next) {
			break
		}
		// One missed event for the run of lost seqs we do not have.
		end := next
		for s.isLost(end + 1) {
			if _, have := s.buf[end+1]; have {
				break
			}
			end++
		}
		s.last = end
		out = append(out, Event{Type: EventMissed, FromSeq: next, ToSeq: end, Count: end - next + 1})
	}
	// Forget lost ranges that are behind us.
	keep := s.lost[:0]
	for _, r := range s.lost {
		if r.to > s.last {
			keep = append(keep, r)
		}
	}
	s.lost = keep
	return out
}

func (s *sequencer) isLost(seq uint64) bool {
	for _, r := range s.lost {
		if r.from <= seq && seq <= r.to {
			return true
		}
	}
	return false
}

// gaps returns up to n ranges of seqs above last, up to known, that we
// neither have nor know to be lost: what to ask the relay to repair.
func (s *sequencer) gaps(n int) []seqRange {
	var out []seqRange
	cur := -1 // index in out of the range that may grow, or -1
	end := min(s.known, s.last+maxGapScan)
	for seq := s.last + 1; seq <= end; seq++ {
		_, have := s.buf[seq]
		if have || s.isLost(seq) {
			cur = -1
			continue
		}
		if cur >= 0 {
			out[cur].to = seq
			continue
		}
		if len(out) == n {
			return out
		}
		out = append(out, seqRange{seq, seq})
		cur = len(out) - 1
	}
	if s.known > end {
		switch {
		case cur >= 0:
			out[cur].to = s.known
		case len(out) < n:
			out = append(out, seqRange{end + 1, s.known})
		}
	}
	return out
}

// roomEvent converts a room event frame (or a dm from the inbox).
func roomEvent(f *wire.Frame, history bool) Event {
	e := Event{Room: f.Room, Seq: f.Seq, Epoch: f.Epoch, From: f.From, History: history}
	switch f.T {
	case wire.FrameChat:
		e.Type, e.Text, e.ID = EventChat, f.Text, f.ID
	case wire.FrameJoin:
		e.Type, e.Names, e.Count = EventJoin, f.Names, f.Count
	case wire.FrameLeave:
		e.Type, e.Reason, e.Names, e.Count = EventLeave, f.Reason, f.Names, f.Count
	case wire.FrameTimeout:
		e.Type = EventTimeout
	case wire.FrameNotice:
		e.Type, e.Text, e.Topic = EventNotice, f.Text, f.Topic
	case wire.FrameDM:
		e.Type, e.To, e.Text, e.ID = EventDM, f.To, f.Text, f.ID
	}
	return e
}

// isRoomFrame reports whether a frame type is a sequenced event.
func isRoomFrame(t string) bool {
	switch t {
	case wire.FrameChat, wire.FrameJoin, wire.FrameLeave, wire.FrameTimeout, wire.FrameNotice, wire.FrameDM:
		return true
	}
	return false
}
