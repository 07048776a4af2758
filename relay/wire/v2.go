package wire

import (
	"bytes"
	"errors"
	"unicode/utf8"
)

// V2Magic starts every v2 datagram: the line "CR2". No classic request can
// start with it (a classic verb is followed by a space), and the classic
// parser drops it as an unknown verb.
const V2Magic = "CR2\n"

// RoomMain is the one room, named in every frame.
const RoomMain = "main"

// MaxFramesPerDatagram bounds how many lines (frames, and from revision 2
// context lines) one datagram may carry: every datagram a client sends the
// relay, and every datagram to a receiver below revision 4.
const MaxFramesPerDatagram = 64

// MaxLinesWide bounds the lines of a datagram to a receiver of revision 4
// (wide datagrams): an 8,192-byte datagram to loopback holds 105 of the
// load tool's chat rows, where 64 lines held 63.
const MaxLinesWide = 256

// MaxLines returns the most lines a datagram to a receiver of revision rev
// may carry: MaxLinesWide from revision 4, else MaxFramesPerDatagram.
func MaxLines(rev uint64) int {
	if rev >= 4 {
		return MaxLinesWide
	}
	return MaxFramesPerDatagram
}

// Frame types. See docs/PROTOCOL.md.
const (
	// client to relay
	FrameHello  = "hello"
	FrameResume = "resume"
	FrameChat   = "chat" // also the room event
	FramePing   = "ping"
	FrameRepair = "repair"
	FrameWho    = "who"
	FrameQuit   = "quit"
	// client to relay, revision 1 (rooms and direct messages)
	FramePart  = "part"  // leave a room; FrameJoin (with room and key) joins one
	FrameRooms = "rooms" // list the rooms
	FrameMsg   = "msg"   // a direct message to a member
	// FrameHistory asks for a room's events before a seq (revision 1).
	FrameHistory = "history"
	// relay to client
	FrameRetry     = "retry"
	FrameWelcome   = "welcome"
	FrameRefused   = "refused"
	FrameJoin      = "join"
	FrameLeave     = "leave"
	FrameTimeout   = "timeout"
	FrameNotice    = "notice"
	FrameAck       = "ack"
	FrameMissed    = "missed"
	FramePong      = "pong"
	FrameMembers   = "members"
	FrameBye       = "bye"
	FrameThrottled = "throttled"
	FrameRestart   = "restart"
	FrameError     = "error"
	// relay to client, revision 1
	FrameParted = "parted" // answer to part: you are no longer in the room
	FrameRoom   = "room"   // one entry of the room list
	FrameDM     = "dm"     // a direct message, in the inbox room
	// FrameHistoryEnd closes the answer to history: what was sent, whether
	// older events are still held, and which are lost.
	FrameHistoryEnd = "history_end"
)

// History requests: the events one history frame is answered with by
// default (no limit) and at most (a larger limit is served as this).
const (
	HistoryLimit    = 50
	MaxHistoryLimit = 200
)

// Rev is the revision of v2 this package speaks: 0 is v2 as first
// published (one room); 1 adds rooms (join, part, rooms, topics), direct
// messages (msg, dm, the inbox) and history (older events on request); 2
// packs room events compactly (a ctx line states their room, epoch and
// first seq once: compact.go); 3 writes chats as rows, their ids only in
// their senders' copies (rows.go); 4 lets a datagram to the client carry up
// to MaxLinesWide lines instead of MaxFramesPerDatagram (wide datagrams). A
// client says which it speaks in its hello
// ("rev"); the relay answers with the revision it will use in the welcome,
// and never sends a client what its revision does not know.
const Rev = 4

// Inbox is the room name of a session's own inbox, where its direct
// messages arrive as sequenced events (each session has its own sequence).
// No room can be called that: room names never start with "@".
const Inbox = "@"

// MaxRoomRunes bounds a room name, in code points after PRECIS enforcement.
const MaxRoomRunes = 64

// Codes of refused and error frames that a client acts on; the others are
// shown with their reason. See docs/PROTOCOL.md.
const (
	// CodeUnknownSession refuses a resume whose token the relay does not
	// know (it restarted, or the session timed out): log in again.
	CodeUnknownSession = "unknown_session"
	// CodeRemoved tells a member the operator removed it: followed in the
	// same datagram by bye (from the relay: the session ends) or parted
	// (from that room only: the session goes on).
	CodeRemoved = "removed"
	// CodeNotInRoom answers a frame for a room the member is not in.
	CodeNotInRoom = "not_in_room"
	// CodeNoSuchMember answers a msg to a name nobody holds.
	CodeNoSuchMember = "no_such_member"
	// CodeUnsupported answers a msg to a member whose client cannot
	// receive direct messages (v2 revision 0).
	CodeUnsupported = "unsupported"
	// CodeMuted refuses a chat or msg from a muted member.
	CodeMuted = "muted"
	// CodeUnavailable refuses a login, or answers a chat or msg that was
	// not stored, while the relay cannot reach its store (a NATS cluster):
	// nothing was decided; a chat stays unacknowledged, so the client
	// retransmits it until the store is back.
	CodeUnavailable = "unavailable"
	// Join refusals.
	CodeRoomInvalid  = "room_invalid"   // not a valid room name
	CodeRoomsFull    = "rooms_full"     // the relay has --max-rooms rooms
	CodeTooManyRooms = "too_many_rooms" // the member is in --max-rooms-per-member rooms
	CodeRoomFull     = "room_full"      // the room is at its member limit
	CodeBadKey       = "bad_key"        // the room has a key and this was not it
)

// Frame is one v2 frame: a JSON object on one line. Every field is
// optional except T; zero values are omitted on the wire, so sequence
// numbers and ids start at 1. Unknown fields are ignored when decoding.
type Frame struct {
	T       string   `json:"t"`
	Room    string   `json:"room,omitempty"`
	Seq     uint64   `json:"seq,omitempty"`
	Epoch   string   `json:"epoch,omitempty"`
	From    string   `json:"from,omitempty"`
	Name    string   `json:"name,omitempty"`
	ID      uint64   `json:"id,omitempty"`
	Text    string   `json:"text,omitempty"`
	Token   string   `json:"token,omitempty"`
	Cookie  string   `json:"cookie,omitempty"`
	Last    uint64   `json:"last,omitempty"`
	FromSeq uint64   `json:"from_seq,omitempty"`
	ToSeq   uint64   `json:"to_seq,omitempty"`
	Count   uint64   `json:"count,omitempty"`
	History bool     `json:"history,omitempty"`
	Code    string   `json:"code,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	RetryMS int64    `json:"retry_ms,omitempty"`
	Names   []string `json:"names,omitempty"`
	More    bool     `json:"more,omitempty"`
	Rev     uint64   `json:"rev,omitempty"`
	To      string   `json:"to,omitempty"`
	Topic   string   `json:"topic,omitempty"`
	Key     string   `json:"key,omitempty"`
	Limit   uint64   `json:"limit,omitempty"`
	Locked  bool     `json:"locked,omitempty"`
	Before  uint64   `json:"before,omitempty"`
	Lost    uint64   `json:"lost,omitempty"`
	Pad     string   `json:"pad,omitempty"`
}

// IsV2 reports whether a datagram is a v2 datagram (it starts with
// V2Magic). It looks at the first four bytes only.
func IsV2(b []byte) bool { return bytes.HasPrefix(b, []byte(V2Magic)) }

// v2 decode errors.
var (
	// ErrV2NoFrames reports a v2 datagram with no frame after the magic.
	ErrV2NoFrames = errors.New("relay: v2 datagram without frames")
	// ErrV2TooManyFrames reports more lines than the decoder's bound:
	// MaxFramesPerDatagram, or MaxLinesWide for DecodeV2Wide.
	ErrV2TooManyFrames = errors.New("relay: too many v2 frames")
	// ErrV2BadFrame reports a line that is not a JSON object with a "t".
	ErrV2BadFrame = errors.New("relay: malformed v2 frame")
)

// DecodeV2 decodes a v2 datagram into its frames, appending to dst. The
// datagram must be valid UTF-8, start with V2Magic, and hold 1 to
// MaxFramesPerDatagram lines, each a JSON object with a non-empty "t"; the
// last line's "\n" may be missing. Blank lines are skipped. On error, no
// frame of the datagram is returned: a datagram is accepted whole or not.
// Each line is decoded exactly as encoding/json would decode it into a
// Frame (see v2codec.go). The frames do not alias b: b may be reused at
// once.
func DecodeV2(dst []Frame, b []byte) ([]Frame, error) {
	return decodeV2(dst, b, false, false, MaxFramesPerDatagram)
}

// DecodeV2InPlace is DecodeV2 without the copies: the frames' strings
// alias b, so they are valid only while b is neither modified nor reused.
// Whatever outlives that must be copied. It allocates only to grow dst.
func DecodeV2InPlace(dst []Frame, b []byte) ([]Frame, error) {
	return decodeV2(dst, b, true, false, MaxFramesPerDatagram)
}

// DecodeFrameInPlace decodes one frame line (a JSON object, with or
// without its "\n") into f, whose strings then alias line. It reports
// whether line is a frame; it accepts every line AppendFrame writes.
func DecodeFrameInPlace(line []byte, f *Frame) bool {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	return utf8.Valid(line) && decodeFrame(unsafeString(line), f)
}

// AppendV2Header appends V2Magic to dst: the start of a v2 datagram.
func AppendV2Header(dst []byte) []byte { return append(dst, V2Magic...) }

// AppendFrame appends f as one JSON line (with its "\n") to dst, byte for
// byte as a json.Encoder with SetEscapeHTML(false) writes it: HTML
// characters are not escaped, so captures stay readable. It does not
// allocate beyond growing dst.
func AppendFrame(dst []byte, f *Frame) []byte { return appendFrameJSON(dst, f) }

// EncodeV2 returns a whole datagram holding frames.
func EncodeV2(frames ...*Frame) []byte {
	b := AppendV2Header(make([]byte, 0, 256))
	for _, f := range frames {
		b = AppendFrame(b, f)
	}
	return b
}
