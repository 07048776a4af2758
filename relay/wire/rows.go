package wire

import (
	"bytes"
	"math"
)

// Revision 3: chat rows (docs/PROTOCOL.md, "v2 revision 3").
//
// In a compact datagram for a member of revision 3, a chat event whose
// room, epoch and seq its context gives is written as a row, a JSON array
// of its sender and text, and its id in the sender's own copy only (the
// echo that acknowledges it; nobody else has a use for it):
//
//	CR2
//	{"t":"ctx","room":"main","seq":42,"epoch":"5f3a9c01"}
//	["alice","hi"]
//	["bob","hello",7]
//	{"t":"join","from":"carol"}
//
// A row is the frame {"t":"chat","from":F,"text":T,"id":I} (no id: 0), and
// the context's rule applies to it as to any frame without a room, epoch
// and seq. Only DecodeV2Compact reads rows; the relay writes them only to
// sessions of revision 3.

// Row keys, as AppendFrame writes them after a chat's epoch.
const (
	keyFrom = `,"from":`
	keyID   = `,"id":`
	keyText = `,"text":`
)

// decodeRow decodes one row line, a JSON array of two strings and an
// optional unsigned integer ([from, text] or [from, text, id]), into f as
// a chat frame, reading each element as encoding/json would into a string
// and a uint64 (null is refused). s must be valid UTF-8.
func decodeRow(s string, f *Frame) bool {
	d := frameDec{s: s}
	d.ws()
	if !d.eat('[') {
		return false
	}
	var strs [2]string
	for k := range strs {
		d.ws()
		if k > 0 {
			if !d.eat(',') {
				return false
			}
			d.ws()
		}
		v, ok := d.str()
		if !ok {
			return false
		}
		strs[k] = v
	}
	d.ws()
	var id uint64
	if d.eat(',') {
		d.ws()
		var ok bool
		if id, ok = d.uint(); !ok {
			return false
		}
		d.ws()
	}
	if !d.eat(']') {
		return false
	}
	d.ws()
	if d.i != len(d.s) {
		return false
	}
	*f = Frame{T: FrameChat, From: strs[0], Text: strs[1], ID: id}
	return true
}

// cutRow finds, in a chat's line cut up to its epoch, its from, id and
// text: the line must go on exactly as AppendFrame writes a live chat,
// ,"from":F[,"id":I],"text":T} and nothing else (a backlog chat's
// "history" keeps it an object line).
func (c *EventCut) cutRow(line []byte) {
	if !bytes.Equal(line[:c.tEnd], []byte(`{"t":"chat"`)) {
		return
	}
	i := int(c.epochEnd)
	if !bytes.HasPrefix(line[i:], []byte(keyFrom)) {
		return
	}
	from := skipJSONString(line, i+len(keyFrom))
	if from < 0 {
		return
	}
	i = from
	idEnd := 0
	if bytes.HasPrefix(line[i:], []byte(keyID)) {
		end, _, ok := cutUint(line, i+len(keyID))
		if !ok {
			return // not AppendFrame's: a row copies the digits as they are
		}
		idEnd, i = end, end
	}
	if !bytes.HasPrefix(line[i:], []byte(keyText)) {
		return
	}
	text := skipJSONString(line, i+len(keyText))
	if text < 0 {
		return
	}
	if rest := string(line[text:]); rest != "}\n" && rest != "}" {
		return
	}
	c.fromEnd, c.idEnd, c.textStart, c.textEnd = int32(from), int32(idEnd), int32(i+len(keyText)), int32(text)
}

// cutUint reads the digits of a positive uint64 at line[i:], as
// AppendFrame writes one (no leading zero, no sign): it returns their end
// and value, or false.
func cutUint(line []byte, i int) (end int, v uint64, ok bool) {
	d := i
	for d < len(line) && line[d] >= '0' && line[d] <= '9' {
		x := uint64(line[d] - '0')
		if v > (math.MaxUint64-x)/10 {
			return 0, 0, false // not a uint64
		}
		v = v*10 + x
		d++
	}
	if d == i || line[i] == '0' {
		return 0, 0, false
	}
	return d, v, true
}

// row reports whether the event can be written as a row.
func (c EventCut) row() bool { return c.fromEnd != 0 }

// HasID reports whether the event is a chat that can be written as a row
// and carries its sender's id.
func (c EventCut) HasID() bool { return c.idEnd != 0 }

// WithoutID returns c for a row written without the chat's id: the copy
// for every member but the chat's sender.
func (c EventCut) WithoutID() EventCut {
	c.idEnd = 0
	return c
}

// appendRow appends the event's row (with its "\n") to dst.
func (c EventCut) appendRow(dst, line []byte) []byte {
	dst = append(dst, '[')
	dst = append(dst, line[c.epochEnd+int32(len(keyFrom)):c.fromEnd]...)
	dst = append(dst, ',')
	dst = append(dst, line[c.textStart:c.textEnd]...)
	if c.idEnd != 0 {
		dst = append(dst, ',')
		dst = append(dst, line[c.fromEnd+int32(len(keyID)):c.idEnd]...)
	}
	return append(dst, ']', '\n')
}

// EncodeV2Rows returns a whole datagram holding frames in revision 3's
// form, as the relay packs room events for a member of revision 3: as
// EncodeV2Compact, and every chat the context gives a room, epoch and seq
// as a row, with its id if it has one (the relay leaves the id out of
// every copy but the sender's). No frame may be of type FrameCtx.
func EncodeV2Rows(frames ...*Frame) []byte { return encodeCompacted(Compactor{Rows: true}, frames) }
