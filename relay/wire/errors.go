package wire

import "errors"

// Parse errors. Each maps to one drop reason; none is ever answered on the
// wire, because a reply to garbage is an amplifier.
var (
	// ErrEmpty reports a datagram with no bytes (after the newline strip).
	ErrEmpty = errors.New("wire: empty datagram")
	// ErrBadUTF8 reports a datagram that is not valid UTF-8.
	ErrBadUTF8 = errors.New("wire: invalid UTF-8")
	// ErrUnknownVerb reports a datagram whose first field is not L, C or Q.
	ErrUnknownVerb = errors.New("wire: unknown verb")
	// ErrMalformed reports a known verb without the fields it needs.
	ErrMalformed = errors.New("wire: malformed request")
)

// Name errors, returned by CanonicalName. The relay refuses a login with
// each for a reason of its own.
var (
	// ErrNameInvalid reports a name the PRECIS Nickname profile rejects, or
	// one that is empty, longer than MaxNameRunes or contains a space.
	ErrNameInvalid = errors.New("wire: invalid name")
	// ErrNameReserved reports a name that belongs to the relay itself.
	ErrNameReserved = errors.New("wire: reserved name")
	// ErrRoomInvalid reports a room name CanonicalRoom rejects.
	ErrRoomInvalid = errors.New("wire: invalid room name")
)

// ErrTextControl reports chat text that carries a control, bidi override or
// bidi isolate character.
var ErrTextControl = errors.New("wire: control character in text")
