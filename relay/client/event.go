package client

import (
	"fmt"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// EventType is what an Event reports. The room events (chat, join, leave,
// notice, timeout) carry a Seq; the others are about delivery or about the
// client's own session.
type EventType string

// Event types.
const (
	EventChat    EventType = "chat"    // From said Text (also our own, Self)
	EventJoin    EventType = "join"    // From joined
	EventLeave   EventType = "leave"   // From left; Reason is "quit" or the admin's kick reason
	EventNotice  EventType = "notice"  // an administrator's notice, Text
	EventTimeout EventType = "timeout" // From was evicted for silence

	EventMissed    EventType = "missed"    // Count events FromSeq..ToSeq are lost for good
	EventThrottled EventType = "throttled" // flood control dropped our frames; sends resume after RetryAfter
	EventError     EventType = "error"     // the relay refused a frame: Code, Reason (ID: the chat id, if any)

	// Session state changes.
	EventReconnecting EventType = "reconnecting" // the path broke or the socket changed: resuming the session (Reason)
	EventResumed      EventType = "resumed"      // the session resumed: nothing lost, nobody saw us leave
	EventNewSession   EventType = "new_session"  // the relay forgot the session: logged in again; events in between may be lost (and are reported as missed)
	EventRestarting   EventType = "restarting"   // the relay is restarting: logging in again when it is back
	EventRestarted    EventType = "restarted"    // logged in again after a relay restart: history before it is lost (Epoch is the new one)
	EventEnded        EventType = "ended"        // the session ended for good (Err says why); Events is closed after it
)

// Event is one thing to show. Only the fields that make sense for its Type
// are set.
type Event struct {
	Type    EventType
	Seq     uint64 // room events: the room sequence number
	Epoch   string // room events and restarted: the room's epoch
	From    string // chat, join, leave, timeout: the member
	Text    string // chat, notice: the text, exactly as sent
	ID      uint64 // chat: the sender's message id; error: the refused chat's id
	Self    bool   // chat: our own message, echoed by the relay
	History bool   // room events: backlog replayed on login

	FromSeq, ToSeq, Count uint64 // missed

	RetryAfter time.Duration // throttled
	Code       string        // error, ended: machine-readable reason
	Reason     string        // leave, error, reconnecting, ended: human-readable reason
	Err        error         // ended: why
}

// IsRoomEvent reports whether e is a sequenced room event (chat, join,
// leave, notice, timeout).
func (e Event) IsRoomEvent() bool {
	switch e.Type {
	case EventChat, EventJoin, EventLeave, EventNotice, EventTimeout:
		return true
	}
	return false
}

// String is a one-line human-readable form, for logs and simple clients.
func (e Event) String() string {
	switch e.Type {
	case EventChat, EventJoin, EventLeave, EventTimeout, EventNotice:
		return e.Format("en")
	case EventMissed:
		return fmt.Sprintf("%d message(s) missed (seq %d-%d): the relay no longer has them", e.Count, e.FromSeq, e.ToSeq)
	case EventThrottled:
		return fmt.Sprintf("sending too fast: waiting %v", e.RetryAfter)
	case EventError:
		return fmt.Sprintf("relay error %s: %s", e.Code, e.Reason)
	case EventReconnecting:
		return "connection lost, resuming the session (" + e.Reason + ")"
	case EventResumed:
		return "session resumed"
	case EventNewSession:
		return "the relay forgot our session: logged in again; messages in between may be lost"
	case EventRestarting:
		return "the relay is restarting: will log in again when it is back"
	case EventRestarted:
		return "the relay restarted: logged in again; history before the restart is lost"
	case EventEnded:
		if e.Err != nil {
			return "session ended: " + e.Err.Error()
		}
		return "session ended"
	}
	return string(e.Type)
}

// Format is String in a language: room events are worded exactly as a
// relay run with that --lang words them to classic clients ("zh": the
// classic teaching chat room's wording); other events are in English, but
// for missed, which has a Chinese form too.
func (e Event) Format(lang string) string {
	w := wire.Words(wire.Lang(lang))
	switch e.Type {
	case EventChat:
		return fmt.Sprintf(w.Chat, e.From, e.Text)
	case EventJoin:
		return fmt.Sprintf(w.Join, e.From)
	case EventLeave:
		if e.Reason != "" && e.Reason != "quit" {
			return fmt.Sprintf(w.Kicked, e.From, e.Reason)
		}
		return fmt.Sprintf(w.Leave, e.From)
	case EventTimeout:
		return fmt.Sprintf(w.TimedOut, e.From)
	case EventNotice:
		return fmt.Sprintf(w.Admin, e.Text)
	case EventMissed:
		if lang == "zh" {
			return fmt.Sprintf("漏掉了 %d 条消息 (序号 %d-%d): 服务器已不再保存", e.Count, e.FromSeq, e.ToSeq)
		}
	}
	return e.String()
}
