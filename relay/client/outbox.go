package client

import "time"

// Retransmission schedule of a chat message: 250 ms, doubling to 2 s.
const (
	sendFirstWait = 250 * time.Millisecond
	sendMaxWait   = 2 * time.Second
)

// outMsg is one chat message, or direct message, waiting for its echo or
// ack.
type outMsg struct {
	id   uint64
	room string // chat: the room's compare key
	to   string // msg: the recipient (room is empty)
	text string
	next time.Time     // when to (re)send; zero: at once
	wait time.Duration // the wait after the next send
	sent int           // sends so far
	told bool          // the user was told the relay could not store it yet
}

// outbox holds chat messages until the relay confirms them, and decides
// when each is (re)sent. At most window messages are in flight; the rest
// wait their turn in id order. It is not safe for concurrent use: the
// client's loop owns it.
type outbox struct {
	window int
	// ready reports whether a message can be sent now (its room joined);
	// nil means every one can. One that cannot keeps its place in the
	// window and waits.
	ready  func(*outMsg) bool
	nextID uint64    // the id the next message gets
	msgs   []*outMsg // unconfirmed, in id order; msgs[:window] may be in flight
	hold   time.Time // throttled: nothing is sent before then
}

func newOutbox(window int) *outbox { return &outbox{window: window, nextID: 1} }

// add queues text as a chat for room (a compare key), or as a msg to to
// when to is not empty, and returns its id.
func (o *outbox) add(room, to, text string) uint64 {
	id := o.nextID
	o.nextID++
	o.msgs = append(o.msgs, &outMsg{id: id, room: room, to: to, text: text, wait: sendFirstWait})
	return id
}

// len is the number of unconfirmed messages.
func (o *outbox) len() int { return len(o.msgs) }

func (o *outbox) flight() []*outMsg { return o.msgs[:min(len(o.msgs), o.window)] }

// ack confirms id, if it was sent. It reports whether id was waiting.
func (o *outbox) ack(id uint64) bool { return o.take(id) != nil }

// take confirms id, if it was sent, and returns its message (nil if id was
// not waiting). Only messages in flight can have been sent, so only they
// are searched.
func (o *outbox) take(id uint64) *outMsg {
	for i, m := range o.flight() {
		if m.id == id && m.sent > 0 {
			o.remove(i)
			return m
		}
	}
	return nil
}

func (o *outbox) remove(i int) {
	copy(o.msgs[i:], o.msgs[i+1:])
	o.msgs[len(o.msgs)-1] = nil
	o.msgs = o.msgs[:len(o.msgs)-1]
}

// drop removes every message for which gone reports true, sent or not,
// and returns them in id order.
func (o *outbox) drop(gone func(*outMsg) bool) []*outMsg {
	var out []*outMsg
	keep := o.msgs[:0]
	for _, m := range o.msgs {
		if gone(m) {
			out = append(out, m)
		} else {
			keep = append(keep, m)
		}
	}
	clear(o.msgs[len(keep):])
	o.msgs = keep
	return out
}

// due returns the messages to send at now, and schedules their next send.
func (o *outbox) due(now time.Time) []*outMsg {
	if now.Before(o.hold) {
		return nil
	}
	var out []*outMsg
	for _, m := range o.flight() {
		if m.next.After(now) || (o.ready != nil && !o.ready(m)) {
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
		if o.ready != nil && !o.ready(m) {
			continue // sent when its room is joined, which wakes the loop
		}
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
