package client

import "time"

// Retransmission schedule of a chat message: 250 ms, doubling to 2 s.
const (
	sendFirstWait = 250 * time.Millisecond
	sendMaxWait   = 2 * time.Second
)

// outMsg is one chat message waiting for its echo or ack.
type outMsg struct {
	id   uint64
	text string
	next time.Time     // when to (re)send; zero: at once
	wait time.Duration // the wait after the next send
	sent int           // sends so far
}

// outbox holds chat messages until the relay confirms them, and decides
// when each is (re)sent. At most window messages are in flight; the rest
// wait their turn in id order. It is not safe for concurrent use: the
// client's loop owns it.
type outbox struct {
	window int
	nextID uint64    // the id the next message gets
	msgs   []*outMsg // unconfirmed, in id order; msgs[:window] may be in flight
	hold   time.Time // throttled: nothing is sent before then
}

func newOutbox(window int) *outbox { return &outbox{window: window, nextID: 1} }

// add queues text and returns its id.
func (o *outbox) add(text string) uint64 {
	id := o.nextID
	o.nextID++
	o.msgs = append(o.msgs, &outMsg{id: id, text: text, wait: sendFirstWait})
	return id
}

// len is the number of unconfirmed messages.
func (o *outbox) len() int { return len(o.msgs) }

func (o *outbox) flight() []*outMsg { return o.msgs[:min(len(o.msgs), o.window)] }

// ack confirms id, if it was sent. Only messages in flight can have been
// sent, so only they are searched. It reports whether id was waiting.
func (o *outbox) ack(id uint64) bool {
	for i, m := range o.flight() {
		if m.id == id && m.sent > 0 {
			copy(o.msgs[i:], o.msgs[i+1:])
			o.msgs[len(o.msgs)-1] = nil
			o.msgs = o.msgs[:len(o.msgs)-1]
			return true
		}
	}
	return false
}

// due returns the messages to send at now, and schedules their next send.
func (o *outbox) due(now time.Time) []*outMsg {
	if now.Before(o.hold) {
		return nil
	}
	var out []*outMsg
	for _, m := range o.flight() {
		if m.next.After(now) {
			continue
		}
		m.sent++
		m.next = now.Add(m.wait)
		m.wait = min(m.wait*2, sendMaxWait)
		out = append(out, m)
	}
	return out
}

// deadline returns when due next has something to send; ok is false when
// nothing is waiting.
func (o *outbox) deadline() (t time.Time, ok bool) {
	for _, m := range o.flight() {
		if !ok || m.next.Before(t) {
			t, ok = m.next, true
		}
	}
	if ok && t.Before(o.hold) {
		t = o.hold
	}
	return t, ok
}

// throttle holds every send until until.
func (o *outbox) throttle(until time.Time) {
	if until.After(o.hold) {
		o.hold = until
	}
}

// renumber gives every waiting message a fresh id from 1 for a new session
// (ids are per session) and sends them again at once.
func (o *outbox) renumber() {
	o.nextID = 1
	for _, m := range o.msgs {
		m.id = o.nextID
		o.nextID++
		m.next, m.wait, m.sent = time.Time{}, sendFirstWait, 0
	}
	o.hold = time.Time{}
}

// resendSoon makes every message in flight due at once with a fresh
// backoff: after a resume, the path is new.
func (o *outbox) resendSoon() {
	for _, m := range o.flight() {
		m.next, m.wait = time.Time{}, sendFirstWait
	}
}
