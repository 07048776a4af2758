package relay

import (
	"crypto/rand"
	"encoding/hex"
	"sync"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// event is one sequenced room event, kept in the ring for repair and
// backlog.
type event struct {
	line []byte // the event (Seq and Epoch set) encoded once as a JSON line; shared, never modified
}

// room is the sequence and the recent history of one room: every broadcast
// gets the next seq, is encoded once, and is kept in a bounded ring so that
// clients can repair gaps and joiners get a backlog.
type room struct {
	name  string
	epoch string // random per start: a new epoch means history was lost

	mu      sync.Mutex // protects seq, ring, lines and scratch
	seq     uint64     // the latest event's seq; 0 before the first
	ring    []event    // ring[seq % len(ring)]
	lines   slab       // where the events' datagrams are kept
	scratch []byte     // where an event is encoded before it is copied to lines
}

func newRoom(name string, ringSize int) *room {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("relay: crypto/rand: " + err.Error())
	}
	return &room{name: name, epoch: hex.EncodeToString(b[:]), ring: make([]event, ringSize)}
}

// appendTo sequences f (setting Room, Seq and Epoch), encodes it once as a
// frame line, keeps the line in the ring and queues it (as ev.v2) in out,
// under the same hold of r.mu, so that out holds events in sequence order
// (lock order: room.mu -> outbox.mu). The line is shared and never
// modified; it holds copies, so f's strings may alias a datagram buffer
// that is reused afterwards. In steady state it allocates nothing: the
// line is carved from a slab.
func (r *room) appendTo(f *wire.Frame, out *fanout, ev outEvent) []byte {
	f.Room = r.name
	f.Epoch = r.epoch
	r.mu.Lock()
	r.seq++
	f.Seq = r.seq
	r.scratch = wire.AppendFrame(r.scratch[:0], f)
	ev.v2 = r.lines.copy(r.scratch)
	r.ring[r.seq%uint64(len(r.ring))] = event{line: ev.v2}
	out.push(ev)
	r.mu.Unlock()
	return ev.v2
}

// latest returns the latest event's seq.
func (r *room) latest() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// oldestLocked is the oldest seq still in the ring. r.mu must be held.
func (r *room) oldestLocked() uint64 {
	if n := uint64(len(r.ring)); r.seq > n {
		return r.seq - n + 1
	}
	return 1
}

// span returns the encoded events from..to (inclusive, clamped to what
// exists) that are still in the ring, and the part of the range that fell
// out of the ring (lostFrom..lostTo; lostTo == 0 if none).
func (r *room) span(from, to uint64) (lines [][]byte, lostFrom, lostTo uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if from == 0 {
		from = 1
	}
	if to > r.seq {
		to = r.seq
	}
	if from > to {
		return nil, 0, 0
	}
	if oldest := r.oldestLocked(); from < oldest {
		lostFrom, lostTo = from, min(to, oldest-1)
		from = oldest
	}
	for seq := from; seq <= to; seq++ {
		lines = append(lines, r.ring[seq%uint64(len(r.ring))].line)
	}
	return lines, lostFrom, lostTo
}

// backlog returns up to n events up to seq upto, oldest first, marked as
// history (encoded anew: the history flag makes them different bytes).
func (r *room) backlog(n int, upto uint64) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	upto = min(upto, r.seq)
	from := r.oldestLocked()
	if upto >= uint64(n) && upto-uint64(n)+1 > from {
		from = upto - uint64(n) + 1
	}
	var lines [][]byte
	for seq := from; seq <= upto && n > 0; seq++ {
		// The ring keeps only the encoded event: decode it again (its
		// strings alias the line, which never changes) to mark it.
		var f wire.Frame
		line := r.ring[seq%uint64(len(r.ring))].line
		if !wire.DecodeFrameInPlace(line, &f) {
			continue // never: the line is wire.AppendFrame's (FuzzAppendFrame decodes what it encodes)
		}
		f.History = true
		lines = append(lines, wire.AppendFrame(nil, &f))
	}
	return lines
}
