package client

import (
	"errors"
	"fmt"
)

// Errors returned by the Client.
var (
	// ErrClosed reports a call on a Client that was closed, or whose
	// session ended (see Event.Err of the EventEnded event).
	ErrClosed = errors.New("client: closed")
	// ErrNoAnswer reports that the relay sent nothing back to the hellos:
	// nobody speaks v2 there (a classic-only relay is silent), or the path
	// loses everything.
	ErrNoAnswer = errors.New("client: no answer from the relay")
	// ErrUnreachable reports an ICMP port unreachable (ECONNREFUSED) before
	// the relay answered anything: nothing listens there.
	ErrUnreachable = errors.New("client: relay unreachable: connection refused")
	// ErrQueueFull reports a Send with Config.MaxQueue messages already
	// waiting for their acknowledgement.
	ErrQueueFull = errors.New("client: send queue full")
	// ErrTooLong reports a Send whose text does not fit in one datagram;
	// see SplitText.
	ErrTooLong = errors.New("client: message too long for one datagram")
	// ErrEmpty reports a Send of empty text.
	ErrEmpty = errors.New("client: empty message")
	// ErrEnded reports that the relay ended the session unasked (a bye we
	// did not ask for).
	ErrEnded = errors.New("client: the relay ended the session")
	// ErrUnsupported reports a room or direct-message call to a relay that
	// speaks v2 revision 0 (its welcome had no "rev"): the session is in
	// main only.
	ErrUnsupported = errors.New("client: the relay does not support rooms and direct messages (v2 revision 0)")
	// ErrNotInRoom reports a SendTo or Part for a room the client is
	// neither in nor joining.
	ErrNotInRoom = errors.New("client: not in that room")
)

// RefusedError is the relay's refusal of a login or resume: Code is the
// machine-readable reason ("taken", "reserved", "invalid", "full",
// "other_name", ...), Reason the relay's human-readable wording.
type RefusedError struct {
	Code   string
	Reason string
}

func (e *RefusedError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("login refused: %s", e.Reason)
	}
	return fmt.Sprintf("login refused: %s", e.Code)
}

// KickedError reports that the relay removed us from the room (an error
// frame with code "removed"); Reason is the relay's wording, e.g. "you were
// removed by the administrator: spam".
type KickedError struct {
	Reason string
}

func (e *KickedError) Error() string {
	if e.Reason == "" {
		return "removed from the room by the relay"
	}
	return e.Reason
}

// RelayError is the relay's refusal of a request that has no event of its
// own to report it (WhoIn for a locked room, for instance): Code is the
// machine-readable reason, Reason the relay's wording.
type RelayError struct {
	Room   string
	Code   string
	Reason string
}

func (e *RelayError) Error() string {
	what := e.Reason
	if what == "" {
		what = e.Code
	}
	if e.Room != "" {
		return fmt.Sprintf("relay refused (room %s): %s", e.Room, what)
	}
	return "relay refused: " + what
}
