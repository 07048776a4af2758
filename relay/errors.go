package relay

import (
	"errors"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// Login errors, returned by Registry.Join beside wire.ErrNameInvalid and
// wire.ErrNameReserved. Each has its own login refusal reason.
var (
	// ErrNameTaken reports a name held by another member.
	ErrNameTaken = errors.New("relay: name taken")
	// ErrFull reports that the room or the sender's IP is at its member cap.
	ErrFull = errors.New("relay: full")
	// ErrOtherName reports a login for a second name from an address that is
	// already logged in under another name.
	ErrOtherName = errors.New("relay: address already logged in under another name")
	// ErrBanned reports a login from an IP banned for too many refusals.
	ErrBanned = errors.New("relay: too many refused logins")
	// ErrUnavailable reports that the store behind the seam (a NATS
	// cluster) did not answer: nothing was decided, try again later.
	// Implementations of NameDirectory and RoomLog wrap it (errors.Is).
	ErrUnavailable = errors.New("relay: store unavailable")
)

// ErrNotStored reports an operator's change (a ban, a mute, the lockdown,
// a room's settings) that is in force on this relay but that
// Config.Operator failed to store: it ends when the relay stops, and
// other relays sharing the store do not see it. The error wraps the
// store's.
var ErrNotStored = errors.New("relay: not stored, in force on this relay until it stops")

// Drop reasons: the fixed label set of chatrelay_datagrams_dropped_total.
const (
	DropEmpty        = "empty"             // zero bytes after the newline strip
	DropOversize     = "oversize"          // longer than --max-datagram
	DropBadUTF8      = "bad_utf8"          // not UTF-8
	DropUnknownVerb  = "unknown_verb"      // not L, C or Q
	DropMalformed    = "malformed"         // known verb, missing fields
	DropNotLoggedIn  = "not_logged_in"     // C or Q from an address with no session
	DropImpersonate  = "impersonation"     // C or Q naming someone else
	DropControlChars = "control_chars"     // chat text with control/bidi characters
	DropQueueFull    = "queue_full"        // the pool and its queue are full
	DropSenderQueue  = "sender_queue"      // this sender already has too much queued
	DropPanic        = "panic"             // the handler panicked on this datagram
	DropShutdown     = "shutdown"          // arrived while the relay was closing
	DropClassicOff   = "classic_off"       // a classic request while --classic off
	DropUnvalidated  = "unvalidated"       // a v2 hello too small to answer with a retry
	DropDuplicate    = "duplicate"         // a retransmitted v2 chat, acknowledged again
	DropRcvbuf       = "rcvbuf"            // dropped by the kernel: the relay's receive buffer was full
	DropFlood        = "flood"             // over its source's or session's rate
	DropBlocked      = "blocked"           // its source or session is blocked for sustained abuse
	DropMuted        = "muted"             // a chat or direct message from a muted member (the sender is told)
	DropUnavailable  = "store_unavailable" // the room's log did not store it (NATS unreachable; the sender is told)
)

// DropReasons lists every drop reason, for pre-initialising metrics.
var DropReasons = []string{
	DropEmpty, DropOversize, DropBadUTF8, DropUnknownVerb, DropMalformed,
	DropNotLoggedIn, DropImpersonate, DropControlChars, DropQueueFull,
	DropSenderQueue, DropPanic, DropShutdown, DropClassicOff, DropUnvalidated,
	DropDuplicate, DropRcvbuf, DropFlood, DropBlocked, DropMuted, DropUnavailable,
}

func dropReason(err error) string {
	switch err {
	case wire.ErrEmpty:
		return DropEmpty
	case wire.ErrBadUTF8:
		return DropBadUTF8
	case wire.ErrUnknownVerb:
		return DropUnknownVerb
	default:
		return DropMalformed
	}
}

// Login results: the fixed label set of chatrelay_logins_total.
const (
	LoginOK             = "ok"                    // new session
	LoginRepeat         = "repeat"                // retransmitted login, answered OK again
	LoginTaken          = "taken"                 // name held by someone else
	LoginReserved       = "reserved"              // name belongs to the relay
	LoginInvalid        = "invalid"               // name fails the rules
	LoginFull           = "full"                  // member cap or per-IP cap reached
	LoginOtherName      = "other_name"            // address already holds another name
	LoginResumed        = "resumed"               // a v2 session resumed with its token
	LoginUnknownSession = wire.CodeUnknownSession // a resume with an unknown or expired token
	LoginBanned         = "banned"                // the IP is banned after too many refused logins, or the name or address by the operator
	LoginLockdown       = "lockdown"              // the relay is in lockdown and the address is not exempt
	LoginUnavailable    = "unavailable"           // the store (NATS) did not answer: nothing was decided
)

// LoginResults lists every login result, for pre-initialising metrics.
var LoginResults = []string{LoginOK, LoginRepeat, LoginTaken, LoginReserved, LoginInvalid, LoginFull, LoginOtherName, LoginResumed, LoginUnknownSession, LoginBanned, LoginLockdown, LoginUnavailable}

// Broadcast kinds: the fixed label set of chatrelay_broadcasts_total.
const (
	KindChat    = "chat"
	KindJoin    = "join"
	KindLeave   = "leave"
	KindNotice  = "notice"
	KindTimeout = "timeout" // a member evicted for silence or idleness
	KindDM      = "dm"      // a direct message, to one member's inbox
)

// BroadcastKinds lists every broadcast kind, for pre-initialising metrics.
var BroadcastKinds = []string{KindChat, KindJoin, KindLeave, KindNotice, KindTimeout, KindDM}

// Moderation actions: the fixed label set of
// chatrelay_moderation_actions_total.
const (
	ModNotice   = "notice"
	ModKick     = "kick"
	ModBan      = "ban"
	ModUnban    = "unban"
	ModMute     = "mute"
	ModUnmute   = "unmute"
	ModLockdown = "lockdown"
	ModTopic    = "topic"
)

// ModerationActions lists every moderation action, for pre-initialising
// metrics.
var ModerationActions = []string{ModNotice, ModKick, ModBan, ModUnban, ModMute, ModUnmute, ModLockdown, ModTopic}

// loginRefusal is a login the operator refuses (a ban, a lockdown): a
// login result code and its reason, already worded.
type loginRefusal struct{ code, reason string }

func (e loginRefusal) Error() string { return "relay: login refused: " + e.code }

// ErrNoRoom reports an admin request naming a room that does not exist.
var ErrNoRoom = errors.New("relay: no such room")

// ErrNoMember reports an admin request naming nobody in the room.
var ErrNoMember = errors.New("relay: no such member")
