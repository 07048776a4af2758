package relay

import (
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// History: a revision-1 member scrolling back asks for a room's events
// before a seq (history {room, before, limit}); the relay answers with the
// events its log still holds, marked as history like a backlog, and closes
// with history_end, which says what was sent, whether older events are
// still held, and which are lost. See docs/PROTOCOL.md, "History".
//
// The events come from RoomLog.Range, so the in-memory log answers from
// its ring (--ring) and the JetStream log from its stream (--history),
// without either knowing about history requests. Like a repair, a request
// is served from the datagram's repair budget, so one datagram of history
// frames costs the relay no more than one of repairs.

// v2History answers a history frame for r, a room m is in or its inbox
// (the table checked both, and the member's revision).
func (s *Server) v2History(g *datagram, f *wire.Frame, m *Member, r *room, _ time.Time) {
	n := uint64(wire.HistoryLimit)
	if f.Limit > 0 {
		n = min(f.Limit, wire.MaxHistoryLimit)
	}
	if g.repairBudget <= 0 {
		return // the datagram's budget is spent: as for a repair, the client asks again
	}
	n = min(n, uint64(g.repairBudget))

	end := &wire.Frame{T: wire.FrameHistoryEnd, Room: r.name, Epoch: r.log.Epoch(), Before: f.Before}
	to := r.log.Latest() // asked outside every lock, as every log call
	if f.Before > 0 {
		to = min(to, f.Before-1)
	}
	if to == 0 {
		s.sendV2(m, end) // nothing before seq 1
		return
	}
	from := uint64(1)
	if to >= n {
		from = to - n + 1
	}
	// One event more than the page, when there is one before it: whether
	// the log still holds it is what more says.
	probe := from - 1
	lines, _, lostTo := r.log.Range(max(probe, 1), to)
	out, first, last, more := historyLines(lines, probe)
	g.repairBudget -= len(out)
	if lostTo != 0 {
		// A log keeps its newest events: what it lost in this range, it
		// lost down to seq 1.
		end.Lost = lostTo
	}
	if len(out) > 0 {
		end.FromSeq, end.ToSeq, end.Count = first, last, uint64(len(out))
	}
	end.More = more
	s.out.SendFrames(m, out)
	s.sendV2(m, end)
}

// historyLines re-encodes a log's lines as history (their seqs and epoch
// kept), dropping the line of seq probe (when not 0): more reports that it
// was there. first and last are the seqs of the first and last line out.
// The lines share one new buffer: they are queued for sending, so they
// must never change.
func historyLines(lines [][]byte, probe uint64) (out [][]byte, first, last uint64, more bool) {
	size := 0
	for _, l := range lines {
		size += len(l) + len(`,"history":true`)
	}
	buf := make([]byte, 0, size)
	out = make([][]byte, 0, len(lines))
	for _, l := range lines {
		var f wire.Frame
		if !wire.DecodeFrameInPlace(l, &f) {
			continue // never: the log's lines are wire.AppendFrame's
		}
		if probe != 0 && f.Seq == probe {
			more = true
			continue
		}
		if first == 0 {
			first = f.Seq
		}
		last = f.Seq
		f.History = true
		start := len(buf)
		buf = wire.AppendFrame(buf, &f)
		out = append(out, buf[start:len(buf):len(buf)])
	}
	return out, first, last, more
}
