package client

import (
	"unicode/utf8"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// A chat frame must fit in one datagram, text and all: Send refuses text
// that does not (fits), and SplitText cuts text into pieces that do,
// measuring each rune as the JSON encoding will write it.

// chatOverhead is the size of a chat datagram minus its text's encoding,
// with the largest id.
func chatOverhead(room string) int {
	f := wire.Frame{T: wire.FrameChat, Room: room, ID: 1<<64 - 1, Text: "x"}
	return len(wire.EncodeV2(&f)) - 1
}

// fits reports whether text makes a chat frame that fits in a datagram of
// max bytes, whatever its id.
func fits(room, text string, max int) bool {
	f := wire.Frame{T: wire.FrameChat, Room: room, ID: 1<<64 - 1, Text: text}
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
	budget := max(maxDatagram-chatOverhead(room), len(`\ufffd`))
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
