//go:build linux

package main

import (
	"bytes"
	"strconv"
)

// textLen is the size of every chat text; it carries sender, seq and timestamp.
const textLen = 64

// encodeText writes "s=SSSSS q=QQQQQQQQQQ t=TTTTTTTTTTTTTTTTTTT" into the
// start of text (which the caller pads to textLen, e.g. with 'x'). The
// sender takes five digits: the rooms scenario has a sender in each of
// 1,000 rooms.
func encodeText(text []byte, s int, q, t int64) {
	b := text[:0]
	b = append(b, "s="...)
	b = appendPad(b, int64(s), 5)
	b = append(b, " q="...)
	b = appendPad(b, q, 10)
	b = append(b, " t="...)
	b = appendPad(b, t, 19)
	_ = b
}

func appendPad(b []byte, v int64, w int) []byte {
	var tmp [20]byte
	s := strconv.AppendInt(tmp[:0], v, 10)
	for i := len(s); i < w; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// parseText parses a chat text made by encodeText (at least textLen bytes;
// anything after the first textLen is ignored) into sender, seq and send time.
func parseText(p []byte) (s int, q, t int64, ok bool) {
	// s=SSSSS q=QQQQQQQQQQ t=TTTTTTTTTTTTTTTTTTTxxx...
	if len(p) < textLen || p[0] != 's' || p[1] != '=' || p[7] != ' ' || p[8] != 'q' || p[20] != ' ' || p[21] != 't' {
		return
	}
	a, ok1 := atoiDigits(p[2:7])
	b, ok2 := atoiDigits(p[10:20])
	c, ok3 := atoiDigits(p[23:42])
	if !ok1 || !ok2 || !ok3 {
		return
	}
	return int(a), b, c, true
}

// atoiDigits parses a non-empty run of ASCII digits (at most 19: no overflow).
func atoiDigits(p []byte) (int64, bool) {
	if len(p) == 0 || len(p) > 19 {
		return 0, false
	}
	var v int64
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

var says = []byte(" says: ")

// parseChat parses the classic line "NAME says: s=SSSSS q=QQ.. t=TT.. xxx" into
// sender, seq and send time.
func parseChat(p []byte) (s int, q, t int64, ok bool) {
	i := bytes.Index(p, says)
	if i < 0 {
		return
	}
	return parseText(p[i+len(says):])
}

var (
	v2ChatType = []byte(`"t":"chat"`)
	v2TextKey  = []byte(`"text":"`)
	rowTextSep = []byte(`","`) // a row's from, then its text
)

// v2ChatText returns the text of a v2 chat frame line (one JSON object, or
// a row of revision 3: ["from","text"] or ["from","text",id]), or false for
// any other frame. It does not decode JSON: the load tool's names and texts
// need no escaping, and a receiver must keep up with millions of frames/s.
func v2ChatText(line []byte) ([]byte, bool) {
	if len(line) > 0 && line[0] == '[' {
		i := bytes.Index(line, rowTextSep)
		if i < 0 {
			return nil, false
		}
		return line[i+len(rowTextSep):], true
	}
	if bytes.Index(line, v2ChatType) < 0 {
		return nil, false
	}
	i := bytes.Index(line, v2TextKey)
	if i < 0 {
		return nil, false
	}
	return line[i+len(v2TextKey):], true
}

// appendV2Chat appends the v2 datagram of one chat frame for room to dst:
// CR2, then {"t":"chat","room":"ROOM","id":ID,"text":"TEXT"}. room and text
// must need no JSON escaping (the load tool's rooms are "main" and r0000
// to r9999, its texts digits, letters, '=' and spaces).
// TestV2ChatMatchesCodec checks it against the wire codec.
func appendV2Chat(dst []byte, room string, id uint64, text []byte) []byte {
	dst = append(dst, "CR2\n{\"t\":\"chat\",\"room\":\""...)
	dst = append(dst, room...)
	dst = append(dst, "\",\"id\":"...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `,"text":"`...)
	dst = append(dst, text...)
	return append(dst, "\"}\n"...)
}

// natsHandler receives what natsScan finds.
type natsHandler interface {
	natsMsg(payload []byte)
	natsPing()
	natsOther()
}

// maxNATSLine bounds a protocol line (INFO is the longest, a few hundred
// bytes) and maxNATSPayload a message payload that the load tool accepts;
// beyond them the stream is garbage to it and is dropped.
const (
	maxNATSLine    = 8192
	maxNATSPayload = 8192
)

var (
	natsMSG  = []byte("MSG ")
	natsPING = []byte("PING")
)

// natsScan parses the NATS server-to-client protocol at the start of b:
// "MSG subject sid [reply] size\r\n<payload>\r\n", "PING", "PONG", "+OK",
// "INFO {...}", "-ERR ...". It returns how many bytes it consumed: an
// operation cut by the end of b is left for the next read. Bytes it cannot
// make sense of (a line or payload beyond the bounds above) are consumed
// and counted as other, so a bad stream never stalls or grows a buffer.
func natsScan(b []byte, h natsHandler) int {
	off := 0
	for off < len(b) {
		rest := b[off:]
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			if len(rest) > maxNATSLine {
				h.natsOther()
				return len(b)
			}
			return off
		}
		line := bytes.TrimSuffix(rest[:nl], []byte("\r"))
		if bytes.HasPrefix(line, natsMSG) {
			sp := bytes.LastIndexByte(line, ' ')
			size, ok := atoiDigits(line[sp+1:])
			if !ok || size > maxNATSPayload {
				h.natsOther()
				off += nl + 1
				continue
			}
			need := nl + 1 + int(size) + 2
			if len(rest) < need {
				return off
			}
			h.natsMsg(rest[nl+1 : nl+1+int(size)])
			off += need
			continue
		}
		switch {
		case bytes.Equal(line, natsPING):
			h.natsPing()
		case bytes.Equal(line, []byte("PONG")), bytes.Equal(line, []byte("+OK")), bytes.HasPrefix(line, []byte("INFO ")):
		default:
			h.natsOther()
		}
		off += nl + 1
	}
	return off
}
