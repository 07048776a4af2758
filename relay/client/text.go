package client

import (
	"unicode/utf8"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// A chat or msg frame must fit in one datagram, text and all: SendTo and
// Msg refuse text that does not (fits), and SplitText cuts text into
// pieces that do, measuring each rune as the JSON encoding will write it.

// textFrame is the frame that carries text: a chat for room, or a msg to
// to when to is not empty, with the largest id.
func textFrame(room, to, text string) wire.Frame {
	if to != "" {
		return wire.Frame{T: wire.FrameMsg, To: to, ID: 1<<64 - 1, Text: text}
	}
	return wire.Frame{T: wire.FrameChat, Room: room, ID: 1<<64 - 1, Text: text}
}

// textOverhead is the size of a text datagram minus its text's encoding.
func textOverhead(room, to string) int {
	f := textFrame(room, to, "x")
	return len(wire.EncodeV2(&f)) - 1
}

// fits reports whether text makes a chat frame for room that fits in a
// datagram of max bytes, whatever its id.
func fits(room, text string, max int) bool {
	f := textFrame(room, "", text)
	return len(wire.EncodeV2(&f)) <= max
}

// fitsMsg is fits for a msg frame to a member.
func fitsMsg(to, text string, max int) bool {
	f := textFrame("", to, text)
	return len(wire.EncodeV2(&f)) <= max
}

// jsonLen is how many bytes encoding/json (HTML escaping off) writes for
// the rune r that takes size bytes of the input (r is utf8.RuneError with
// size 1 for an invalid byte).
func jsonLen(r rune, size int) int {
	switch {
	case r == utf8.RuneError && size == 1:
		return len(`\ufffd`)
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
		return 2
	case r < 0x20:
		return len(`\u0000`)
	case r == '\u2028' || r == '\u2029':
		return len(`\u2028`)
	}
	return size
}

// SplitText cuts text into pieces that each fit in one chat datagram of
// the relay's default size, never inside a UTF-8 sequence.
func SplitText(text string) []string {
	return SplitTextFor(wire.RoomMain, text, wire.DefaultMaxDatagram)
}

// SplitTextFor is SplitText for a room and a datagram bound.
func SplitTextFor(room, text string, maxDatagram int) []string {
	return split(textOverhead(room, ""), text, maxDatagram)
}

// SplitMsgFor is SplitText for a direct message to a member (Msg) and a
// datagram bound.
func SplitMsgFor(to, text string, maxDatagram int) []string {
	return split(textOverhead("", to), text, maxDatagram)
}

func split(overhead int, text string, maxDatagram int) []string {
	budget := max(maxDatagram-overhead, len(`\ufffd`))
	var parts []string
	start, used := 0, 0
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		n := jsonLen(r, size)
		if used+n > budget && i > start {
			parts = append(parts, text[start:i])
			start, used = i, 0
		}
		used += n
		i += size
	}
	return append(parts, text[start:])
}
