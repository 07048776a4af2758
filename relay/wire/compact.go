package wire

import (
	"bytes"
)

// Revision 2: compact datagrams (docs/PROTOCOL.md, "v2 revision 2").
//
// A datagram that packs several room events states what they share once,
// in a context line, and each event line leaves it out:
//
//	CR2
//	{"t":"ctx","room":"main","seq":42,"epoch":"5f3a9c01"}
//	{"t":"chat","from":"alice","id":7,"text":"hi"}
//	{"t":"join","from":"bob"}
//
// The rule, exactly: a datagram starts with no context. A ctx line sets the
// context to its room, epoch and seq (each absent field: none) and is not a
// frame: a decoder drops it. Every other frame, in order, takes the
// context's room if it has no room and its epoch if it has no epoch; and,
// when the context has a seq, a frame without seq takes that seq, and the
// context's seq becomes the frame's seq + 1. A field a frame states always
// wins. An empty ctx line ({"t":"ctx"}) ends a context: the frames after
// it are read as they are.
//
// ApplyContext and DecodeV2Compact decode it; CutEvent, Compactor and
// Packer write it, deriving the compact line from the full one (as
// AppendFrame wrote it) without decoding it, once per event.

// FrameCtx is revision 2's context line: it states the room, epoch and
// first seq of the frames after it in its datagram.
const FrameCtx = "ctx"

// ctxEnd is the empty context line: it ends the context in force.
const ctxEnd = `{"t":"ctx"}` + "\n"

// ApplyContext applies the context lines among frames, the frames of one
// datagram in order (as DecodeV2 returns them): it fills in the room,
// epoch and seq of the frames after a ctx line as the rule above says and
// drops the ctx lines. It works in place and returns the frames left, a
// prefix of frames; frames without a ctx line come back unchanged.
func ApplyContext(frames []Frame) []Frame {
	var (
		room, epoch string
		next        uint64 // the seq a frame without one takes; 0: none
	)
	out := frames[:0]
	for i := range frames {
		f := frames[i]
		if f.T == FrameCtx {
			room, epoch, next = f.Room, f.Epoch, f.Seq
			continue
		}
		if f.Room == "" {
			f.Room = room
		}
		if f.Epoch == "" {
			f.Epoch = epoch
		}
		if next != 0 {
			if f.Seq == 0 {
				f.Seq = next
			}
			next = f.Seq + 1 // past the largest seq: 0, and the context gives seqs no more
		}
		out = append(out, f)
	}
	clear(frames[len(out):])
	return out
}

// DecodeV2Compact is DecodeV2 for a receiver of revision 2 or 3: a line
// that is a JSON array is a chat row (revision 3: rows.go), and the context
// lines are applied (ApplyContext), so the frames are whole. A datagram of
// context lines alone has no frame (ErrV2NoFrames). The lines, context
// lines included, are at most MaxFramesPerDatagram.
func DecodeV2Compact(dst []Frame, b []byte) ([]Frame, error) {
	return decodeV2Compact(dst, b, MaxFramesPerDatagram)
}

// DecodeV2Wide is DecodeV2Compact for a receiver of revision 4: a datagram
// may carry up to MaxLinesWide lines, context lines included.
func DecodeV2Wide(dst []Frame, b []byte) ([]Frame, error) {
	return decodeV2Compact(dst, b, MaxLinesWide)
}

func decodeV2Compact(dst []Frame, b []byte, maxLines int) ([]Frame, error) {
	start := len(dst)
	dst, err := decodeV2(dst, b, false, true, maxLines)
	if err != nil {
		return dst, err
	}
	dst = dst[:start+len(ApplyContext(dst[start:]))]
	if len(dst) == start {
		return dst, ErrV2NoFrames
	}
	return dst, nil
}

// EventCut says where an event's frame line, as AppendFrame wrote it,
// holds its room, seq and epoch: consecutive fields right after "t"
// (AppendFrame's order). The zero EventCut says the line lacks one of
// them, or is not AppendFrame's: it is only ever written whole.
type EventCut struct {
	tEnd     int32 // end of the "t" member: the line starts {"t":"chat"
	roomEnd  int32 // end of the room's JSON string, quotes included
	seqEnd   int32 // end of the seq's digits
	epochEnd int32 // end of the epoch's JSON string: the rest (,"from"… or }) follows
	seq      uint64

	// A chat that can be written as a row (revision 3): the end of its
	// from string, of its id's digits (0: no id, or left out: WithoutID)
	// and where its text string starts and ends; fromEnd 0: not a row.
	fromEnd, idEnd, textStart, textEnd int32
}

const (
	keyT     = `{"t":`
	keyRoom  = `,"room":`
	keySeq   = `,"seq":`
	keyEpoch = `,"epoch":`
)

// CutEvent finds the room, seq and epoch of a frame line. It reads the
// line's first fields only and allocates nothing.
func CutEvent(line []byte) EventCut {
	if len(line) > 1<<30 || !bytes.HasPrefix(line, []byte(keyT)) {
		return EventCut{}
	}
	i := skipJSONString(line, len(keyT))
	if i < 0 {
		return EventCut{}
	}
	var c EventCut
	c.tEnd = int32(i)
	if !bytes.HasPrefix(line[i:], []byte(keyRoom)) {
		return EventCut{}
	}
	if i = skipJSONString(line, i+len(keyRoom)); i < 0 {
		return EventCut{}
	}
	c.roomEnd = int32(i)
	if !bytes.HasPrefix(line[i:], []byte(keySeq)) {
		return EventCut{}
	}
	d, seq, ok := cutUint(line, i+len(keySeq))
	if !ok { // seq 0 is never written, nor a leading zero
		return EventCut{}
	}
	c.seqEnd, c.seq = int32(d), seq
	if !bytes.HasPrefix(line[d:], []byte(keyEpoch)) {
		return EventCut{}
	}
	if i = skipJSONString(line, d+len(keyEpoch)); i < 0 {
		return EventCut{}
	}
	if i >= len(line) || (line[i] != ',' && line[i] != '}') {
		return EventCut{}
	}
	c.epochEnd = int32(i)
	c.cutRow(line)
	return c
}

// skipJSONString returns the end of the JSON string starting at b[i] (its
// opening quote), or -1.
func skipJSONString(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for i++; i < len(b); i++ {
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			i++
		case '\n':
			return -1
		}
	}
	return -1
}

// Seq returns the event's seq (0 for the zero EventCut).
func (c EventCut) Seq() uint64 { return c.seq }

// ok reports whether the line was cut.
func (c EventCut) ok() bool { return c.tEnd != 0 }

func (c EventCut) room(line []byte) []byte {
	return line[c.tEnd+int32(len(keyRoom)) : c.roomEnd]
}

func (c EventCut) seqDigits(line []byte) []byte {
	return line[c.roomEnd+int32(len(keySeq)) : c.seqEnd]
}

func (c EventCut) epoch(line []byte) []byte {
	return line[c.seqEnd+int32(len(keyEpoch)) : c.epochEnd]
}

// Compactor writes the event lines of one datagram in revision 2's compact
// form: a context line when the room or epoch changes (or at the first
// event), then each event without its room and epoch, and without its seq
// when it is the one after the previous event's. A line that cannot be cut
// goes whole, after an empty context line if a context is in force. The
// zero Compactor is ready for a datagram; it keeps slices of the lines it
// was given until Reset.
type Compactor struct {
	Rows bool // revision 3: a chat the context gives room, epoch and seq goes as a row

	room, epoch []byte // the context in force, as JSON strings; room nil: none
	next        uint64 // the seq an event without one takes; 0: none
	lines       int    // lines written, context lines included
	events      int    // event lines written
	first       []byte // the first event's full line
}

// Reset makes c ready for the next datagram.
func (c *Compactor) Reset() { *c = Compactor{Rows: c.Rows} }

// Lines returns the lines written since Reset, context lines included: a
// receiver refuses a datagram of more than its revision's MaxLines.
func (c *Compactor) Lines() int { return c.lines }

// Events returns the event lines written since Reset.
func (c *Compactor) Events() int { return c.events }

// Append appends the event line (with its "\n"), cut by CutEvent, to dst
// in compact form.
func (c *Compactor) Append(dst, line []byte, cut EventCut) []byte {
	if c.events == 0 {
		c.first = line
	}
	c.events++
	if !cut.ok() {
		if c.room != nil {
			dst = append(dst, ctxEnd...)
			c.lines++
			c.room, c.epoch, c.next = nil, nil, 0
		}
		c.lines++
		return append(dst, line...)
	}
	room, epoch := cut.room(line), cut.epoch(line)
	if c.room == nil || !bytes.Equal(room, c.room) || !bytes.Equal(epoch, c.epoch) {
		dst = append(dst, `{"t":"ctx","room":`...)
		dst = append(dst, room...)
		dst = append(dst, keySeq...)
		dst = append(dst, cut.seqDigits(line)...)
		dst = append(dst, keyEpoch...)
		dst = append(dst, epoch...)
		dst = append(dst, '}', '\n')
		c.lines++
		c.room, c.epoch, c.next = room, epoch, cut.seq
	}
	if c.Rows && cut.row() && c.next != 0 && cut.seq == c.next {
		c.next = cut.seq + 1
		c.lines++
		return cut.appendRow(dst, line)
	}
	dst = append(dst, line[:cut.tEnd]...)
	if c.next == 0 || cut.seq != c.next {
		dst = append(dst, keySeq...)
		dst = append(dst, cut.seqDigits(line)...)
	}
	if c.next != 0 {
		c.next = cut.seq + 1
	}
	c.lines++
	return append(dst, line[cut.epochEnd:]...)
}

// Finish ends the datagram that starts at dst[start] (its CR2 line) and
// resets c. A datagram of one event is written whole instead: a context
// line for one event costs 12 bytes more than it saves.
func (c *Compactor) Finish(dst []byte, start int) []byte {
	if c.events == 1 && c.lines > 1 {
		dst = append(dst[:start+len(V2Magic)], c.first...)
	}
	c.Reset()
	return dst
}

// EncodeV2Compact returns a whole datagram holding frames in revision 2's
// compact form, as the relay packs room events for a revision-2 member.
// No frame may be of type FrameCtx.
func EncodeV2Compact(frames ...*Frame) []byte { return encodeCompacted(Compactor{}, frames) }

// encodeCompacted writes frames, each encoded by AppendFrame and cut by
// CutEvent, through c into one datagram.
func encodeCompacted(c Compactor, frames []*Frame) []byte {
	b := AppendV2Header(make([]byte, 0, 256))
	for _, f := range frames {
		line := AppendFrame(nil, f)
		b = c.Append(b, line, CutEvent(line))
	}
	return c.Finish(b, 0)
}

// Packer packs frame lines into v2 datagrams one after another in one
// buffer: each datagram at most Budget bytes (one line alone may be more)
// and MaxLines lines (MaxFramesPerDatagram when 0), in full form, or in
// compact form when Compact is set (revision 2). A datagram it returns is a slice of the
// buffer that is never written again. The zero Packer (with Budget set)
// packs into a buffer of its own.
type Packer struct {
	Budget  int  // the largest datagram, in bytes
	Compact bool // revision 2: context lines and compact events
	Rows    bool // revision 3 (with Compact): chats as rows
	// MaxLines bounds a datagram's lines, context lines included: the
	// receiver's MaxLines(rev); 0 is MaxFramesPerDatagram.
	MaxLines int

	buf    []byte
	open   bool // a datagram is open: it begins at buf[start]
	start  int
	events int // events in the open datagram
	c      Compactor
}

// PackerFor returns the Packer of a receiver of revision rev: compact from
// revision 2, chats as rows from 3, and as many lines a datagram as
// MaxLines(rev); budget is the largest datagram in bytes.
func PackerFor(rev uint64, budget int) Packer {
	return Packer{Budget: budget, Compact: rev >= 2, Rows: rev >= 3, MaxLines: MaxLines(rev)}
}

// Reset makes p pack into buf, after what buf holds.
func (p *Packer) Reset(buf []byte) {
	p.buf, p.open, p.start, p.events = buf, false, 0, 0
	p.c.Reset()
}

// Buf returns the buffer with every datagram returned so far; an open
// datagram is not in it (Flush it first).
func (p *Packer) Buf() []byte {
	if p.open {
		return p.buf[:p.start]
	}
	return p.buf
}

// Add adds an event line (with its "\n"), cut by CutEvent when p is
// Compact. If the open datagram cannot take it, Add returns that datagram
// and the events it carries, and the line opens the next one.
func (p *Packer) Add(line []byte, cut EventCut) (done []byte, events int) {
	if !p.open {
		p.begin()
	}
	mark, saved := len(p.buf), p.c
	p.buf = p.add(line, cut)
	lines := p.events + 1
	if p.Compact {
		lines = p.c.Lines()
	}
	maxLines := p.MaxLines
	if maxLines == 0 {
		maxLines = MaxFramesPerDatagram
	}
	if p.events > 0 && (len(p.buf)-p.start > p.Budget || lines > maxLines) {
		p.buf, p.c = p.buf[:mark], saved
		done, events = p.Flush()
		p.begin()
		p.buf = p.add(line, cut)
	}
	p.events++
	return done, events
}

// begin opens a datagram.
func (p *Packer) begin() {
	p.open, p.start, p.events = true, len(p.buf), 0
	p.c.Rows = p.Rows
	p.buf = AppendV2Header(p.buf)
}

func (p *Packer) add(line []byte, cut EventCut) []byte {
	if p.Compact {
		return p.c.Append(p.buf, line, cut)
	}
	return append(p.buf, line...)
}

// Flush returns the open datagram and the events it carries (nil, 0 if
// none is open).
func (p *Packer) Flush() (datagram []byte, events int) {
	if !p.open {
		return nil, 0
	}
	p.open = false
	if p.events == 0 {
		p.buf = p.buf[:p.start]
		return nil, 0
	}
	if p.Compact {
		p.buf = p.c.Finish(p.buf, p.start)
	}
	return p.buf[p.start:len(p.buf):len(p.buf)], p.events
}
