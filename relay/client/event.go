package client

import (
	"fmt"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// EventType is what an Event reports. The room events (chat, join, leave,
// notice, timeout) and direct messages (dm, from the inbox) carry a Seq;
// the others are about delivery or about the client's own session.
type EventType string

// Event types.
const (
	EventChat    EventType = "chat"    // From said Text in Room (also our own, Self)
	EventJoin    EventType = "join"    // From joined Room (a batch in a big room: Names, Count)
	EventLeave   EventType = "leave"   // From left Room; Reason is "quit", "part" or the admin's kick reason (a batch: Names, Count)
	EventNotice  EventType = "notice"  // an administrator's notice, Text; Topic when it announces a new topic
	EventTimeout EventType = "timeout" // From was evicted for silence
	EventDM      EventType = "dm"      // a direct message From to To, delivered from our inbox (Room "@"); Self: our own, echoed

	EventJoined EventType = "joined" // we are in Room now (the answer to Join); Topic is its topic
	EventParted EventType = "parted" // we are no longer in Room: the answer to Part, or (Code, Reason) the relay says we are not in it

	EventMissed    EventType = "missed"    // Count events FromSeq..ToSeq of Room are lost for good
	EventThrottled EventType = "throttled" // flood control dropped our frames; sends resume after RetryAfter
	EventError     EventType = "error"     // the relay refused a frame: Code, Reason (ID: the chat or msg id, if any; Room: the room a join or frame was for; To: the msg's recipient)

	// Session state changes.
	EventReconnecting EventType = "reconnecting" // the path broke or the socket changed: resuming the session (Reason)
	EventFailover     EventType = "failover"     // the relay at PrevAddr stopped answering: the client moved to Addr, the next of several addresses, and resumes (or logs in again) there
	EventResumed      EventType = "resumed"      // the session resumed: nothing lost, nobody saw us leave
	EventNewSession   EventType = "new_session"  // the relay forgot the session (Addr: the relay failed over to, which did not know it): logged in again; events in between may be lost (and are reported as missed)
	EventRestarting   EventType = "restarting"   // the relay is restarting: logging in again when it is back
	EventRestarted    EventType = "restarted"    // logged in again with a new epoch, after a relay restart or at a relay failed over to (Addr) that did not know the session: history before it is lost (Epoch is the new one)
	EventEnded        EventType = "ended"        // the session ended for good (Err says why); Events is closed after it
)

// Event is one thing to show. Only the fields that make sense for its Type
// are set.
type Event struct {
	Type    EventType
	Room    string // room events, missed, joined, parted: the room as the relay names it; dm: the inbox, "@"; error: the room it is about, if any
	Seq     uint64 // room events: the room sequence number (dm: the inbox's)
	Epoch   string // room events and restarted: the room's epoch
	From    string // chat, join, leave, timeout, dm: the member
	To      string // dm: the recipient; error: the refused msg's recipient
	Text    string // chat, notice, dm: the text, exactly as sent
	Topic   string // joined: the room's topic; notice: the new topic, when it announces one
	ID      uint64 // chat, dm: the sender's message id (at revision 3, a chat of someone else's has none: 0); error: the refused chat's or msg's id
	Self    bool   // chat, dm: our own message, echoed by the relay
	History bool   // room events: backlog replayed on login or join

	// Names are the first members of a batched join or leave (a big room
	// announces them at most once a second); From is Names[0].
	Names []string

	FromSeq, ToSeq uint64 // missed
	// Count is, for missed, how many events are lost; for a batched join
	// or leave, how many members the batch announces (0 or 1: From alone).
	Count uint64

	// Addr is, for failover, the relay address the client moved to; for
	// new_session and restarted, set only when the new login follows a
	// failover, the relay there that did not know the session.
	Addr string
	// PrevAddr is, for failover, the relay address that stopped answering.
	PrevAddr string

	RetryAfter time.Duration // throttled
	Code       string        // error, parted, ended: machine-readable reason
	Reason     string        // leave, error, parted, reconnecting, ended: human-readable reason
	Err        error         // ended: why
}

// IsRoomEvent reports whether e is a sequenced event (chat, join, leave,
// notice, timeout, or a dm from the inbox).
func (e Event) IsRoomEvent() bool {
	switch e.Type {
	case EventChat, EventJoin, EventLeave, EventNotice, EventTimeout, EventDM:
		return true
	}
	return false
}

// Batched reports whether e is a batched join or leave: more than one
// member announced at once.
func (e Event) Batched() bool {
	return (e.Type == EventJoin || e.Type == EventLeave) && (e.Count > 1 || len(e.Names) > 1)
}

// String is a one-line human-readable form, for logs and simple clients.
func (e Event) String() string {
	switch e.Type {
	case EventChat, EventJoin, EventLeave, EventTimeout, EventNotice, EventDM, EventJoined, EventParted:
		return e.Format("en")
	case EventMissed:
		return fmt.Sprintf("%d message(s) missed (seq %d-%d): the relay no longer has them", e.Count, e.FromSeq, e.ToSeq)
	case EventThrottled:
		return fmt.Sprintf("sending too fast: waiting %v", e.RetryAfter)
	case EventError:
		s := fmt.Sprintf("relay error %s: %s", e.Code, e.Reason)
		switch {
		case e.To != "":
			s += " (message to " + e.To + ")"
		case e.Room != "":
			s += " (room " + e.Room + ")"
		}
		return s
	case EventReconnecting:
		return "connection lost, resuming the session (" + e.Reason + ")"
	case EventFailover:
		return e.Format("en")
	case EventResumed:
		return "session resumed"
	case EventNewSession:
		if e.Addr != "" {
			return e.Format("en")
		}
		return "the relay forgot our session: logged in again; messages in between may be lost"
	case EventRestarting:
		return "the relay is restarting: will log in again when it is back"
	case EventRestarted:
		if e.Addr != "" {
			return e.Format("en")
		}
		return "the relay restarted: logged in again; history before the restart is lost"
	case EventEnded:
		if e.Err != nil {
			return "session ended: " + e.Err.Error()
		}
		return "session ended"
	}
	return string(e.Type)
}

// Format is String in a language: room events, direct messages and
// batched joins and leaves are worded exactly as a relay run with that
// --lang words them to classic clients ("zh": the classic teaching chat
// room's wording), and our own direct messages, joins and parts in the
// same style; other events are in English, but for missed, failover, and
// a new login at a relay failed over to, which have Chinese forms too.
func (e Event) Format(lang string) string {
	w := wire.Words(wire.Lang(lang))
	x := extraWords(lang)
	switch e.Type {
	case EventChat:
		return fmt.Sprintf(w.Chat, e.From, e.Text)
	case EventJoin:
		if e.Batched() {
			return batch(w, e, true)
		}
		return fmt.Sprintf(w.Join, e.From)
	case EventLeave:
		if e.Batched() {
			return batch(w, e, false)
		}
		if isKick(e.Reason) {
			return fmt.Sprintf(w.Kicked, e.From, e.Reason)
		}
		return fmt.Sprintf(w.Leave, e.From)
	case EventTimeout:
		return fmt.Sprintf(w.TimedOut, e.From)
	case EventNotice:
		return fmt.Sprintf(w.Admin, e.Text)
	case EventDM:
		if e.Self {
			return fmt.Sprintf(x.whisperTo, e.To, e.Text)
		}
		return fmt.Sprintf(w.Whisper, e.From, e.Text)
	case EventJoined:
		s := fmt.Sprintf(x.joined, e.Room)
		if e.Topic != "" {
			s += fmt.Sprintf(x.topic, e.Topic)
		}
		return s
	case EventParted:
		s := fmt.Sprintf(x.parted, e.Room)
		if e.Reason != "" {
			s += ": " + e.Reason
		} else if e.Code != "" {
			s += ": " + e.Code
		}
		return s
	case EventMissed:
		if lang == "zh" {
			return fmt.Sprintf("漏掉了 %d 条消息 (序号 %d-%d): 服务器已不再保存", e.Count, e.FromSeq, e.ToSeq)
		}
	case EventFailover:
		return fmt.Sprintf(x.failover, e.PrevAddr, e.Addr)
	case EventNewSession:
		if e.Addr != "" {
			return fmt.Sprintf(x.unknownAt, e.Addr) + x.mayBeLost
		}
	case EventRestarted:
		if e.Addr != "" {
			return fmt.Sprintf(x.unknownAt, e.Addr) + x.areLost
		}
	}
	return e.String()
}

// isKick reports whether a leave's reason is an administrator's (a kick),
// not the member's own quit or part.
func isKick(reason string) bool {
	switch reason {
	case "", "quit", "part":
		return false
	}
	return true
}

// moreWords is the wording of what only a client shows (our own direct
// messages, joins and parts), in one language: format strings for
// fmt.Sprintf, as wire.EventWords, which words what the relay sends.
type moreWords struct {
	whisperTo string // %s: recipient, %s: text (our own dm, echoed)
	joined    string // %s: room (our own join)
	parted    string // %s: room (our own part)
	topic     string // %s: topic, appended to joined
	failover  string // %s: the silent relay's address, %s: the next one's
	unknownAt string // %s: the relay failed over to, which did not know the session
	mayBeLost string // appended to unknownAt: the same epoch, repaired where the relay can
	areLost   string // appended to unknownAt: a new epoch
}

var moreWordsByLang = map[string]moreWords{
	"en": {
		whisperTo: "you whisper to %s: %s",
		joined:    "you joined %s",
		parted:    "you left %s",
		topic:     " (topic: %s)",
		failover:  "relay %s not answering: switched to %s",
		unknownAt: "relay %s does not know our session: logged in again there",
		mayBeLost: "; messages in between may be lost",
		areLost:   "; messages from before the switch are lost",
	},
	"zh": {
		whisperTo: "你悄悄对 %s 说: %s",
		joined:    "你进入了聊天室 %s",
		parted:    "你离开了聊天室 %s",
		topic:     " (话题: %s)",
		failover:  "服务器 %s 无响应: 已切换到 %s",
		unknownAt: "服务器 %s 不认识本会话: 已在该服务器重新登录",
		mayBeLost: "; 其间的消息可能丢失",
		areLost:   "; 切换前的消息已丢失",
	},
}

func extraWords(lang string) moreWords {
	if w, ok := moreWordsByLang[lang]; ok {
		return w
	}
	return moreWordsByLang["en"]
}

// batch words a batched join (join) or leave as the relay words it for
// classic members (wire.EventWords.Batch).
func batch(w wire.EventWords, e Event, join bool) string {
	names := e.Names
	if len(names) == 0 {
		names = []string{e.From}
	}
	return w.Batch(join, names, max(int(e.Count), len(names)))
}
