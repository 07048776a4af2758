package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// Config configures a Client. Zero values mean the defaults named.
type Config struct {
	// Addr is the relay's HOST:PORT. Required.
	Addr string
	// Name is the name to log in as. Required.
	Name string
	// Room is the room. Default wire.RoomMain (the only one for now).
	Room string
	// Rand jitters repair delays and backoffs. Default: seeded from the
	// clock. Only the client's loop uses it; do not share it.
	Rand *rand.Rand
	// Now is the clock. Default time.Now. The client arms real timers from
	// its readings, so it must advance in step with real time.
	Now func() time.Time
	// HeartbeatEvery is the ping interval. Default 2 s.
	HeartbeatEvery time.Duration
	// DeadAfter is how long without any datagram from the relay, while a
	// member, before the client decides the path broke and resumes.
	// Default 4 heartbeats.
	DeadAfter time.Duration
	// HelloEvery is the interval of hellos while Dial logs in. Default
	// 600 ms.
	HelloEvery time.Duration
	// HelloSilence is how many hellos Dial sends without any answer (and
	// HelloSilence*HelloEvery of silence) before it gives up with
	// ErrNoAnswer. Default 6: with the default interval, 3.6 s.
	HelloSilence int
	// Window bounds the chat messages in flight (sent, not yet confirmed).
	// Default 1: each message waits for the previous one's confirmation,
	// so the room shows a sender's messages in the order they were sent.
	// A larger window sends faster over long round trips, but a lost
	// message can then be overtaken by the sender's next ones.
	Window int
	// MaxQueue bounds the unconfirmed messages, in flight or waiting; Send
	// fails with ErrQueueFull beyond it. Default 4096.
	MaxQueue int
	// MaxDatagram bounds a datagram sent to the relay. Default
	// wire.DefaultMaxDatagram (1024), the relay's default input bound.
	MaxDatagram int
}

func (c *Config) setDefaults() error {
	if c.Addr == "" || c.Name == "" {
		return errors.New("client: Addr and Name are required")
	}
	if c.Room == "" {
		c.Room = wire.RoomMain
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HeartbeatEvery <= 0 {
		c.HeartbeatEvery = 2 * time.Second
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = 4 * c.HeartbeatEvery
	}
	if c.HelloEvery <= 0 {
		c.HelloEvery = 600 * time.Millisecond
	}
	if c.HelloSilence <= 0 {
		c.HelloSilence = 6
	}
	if c.Window <= 0 {
		c.Window = 1
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = 4096
	}
	if c.MaxDatagram <= 0 {
		c.MaxDatagram = wire.DefaultMaxDatagram
	}
	if c.MaxDatagram < 300 {
		return fmt.Errorf("client: max datagram %d is below the 256-byte hello padding", c.MaxDatagram)
	}
	return nil
}

// Protocol timing.
const (
	repairMinDelay = 20 * time.Millisecond  // a gap waits 20..100 ms before its first repair
	repairMaxDelay = 100 * time.Millisecond // ...so one loss seen by many does not storm the relay
	repairRanges   = 64                     // ranges per repair request: every gap in view, so repair keeps up with heavy loss
	maxRepairSpan  = 1024                   // seqs per repair frame (the relay answers at most this many)
	quitWait       = 250 * time.Millisecond // quit retransmission
	quitMax        = 2 * time.Second        // Close waits at most this long for bye
	maxDialTries   = 30                     // hellos before Dial gives up once the relay has answered
)

// Stats are a client's counters.
type Stats struct {
	DatagramsSent     uint64
	DatagramsReceived uint64
	ChatsSent         uint64 // chat frames, retransmissions included
	Retransmits       uint64 // chat frames sent again
	RepairsSent       uint64 // repair frames
	Resumes           uint64 // sessions resumed
	Relogins          uint64 // new sessions after the first
}

// state is where the session is.
type state int

const (
	stHello    state = iota // logging in (Dial, or again after a restart or a lost session)
	stMember                // logged in
	stResume                // resuming the session with its token
	stQuitting              // quit sent, waiting for bye
	stEnded                 // over: nothing more is sent
)

// command is an API call handed to the loop.
type command struct {
	kind  cmdKind
	text  string
	ctx   context.Context
	reply chan cmdReply // buffered 1
}

type cmdKind int

const (
	cmdSend cmdKind = iota
	cmdWho
	cmdName
	cmdFlush
	cmdRebind
	cmdClose
)

type cmdReply struct {
	id    uint64
	names []string
	err   error
}

// Client is one v2 session with a relay. Its methods are safe for
// concurrent use.
type Client struct {
	cfg   Config
	raddr *net.UDPAddr

	cmds     chan command
	in       chan inbound
	events   chan Event
	stop     chan struct{} // closed when the loop ends: readers stop
	loopDone chan struct{} // closed when the loop has returned
	dialed   chan error    // Dial's outcome, buffered 1

	stats struct {
		sent, received, chats, retransmits, repairs, resumes, relogins atomic.Uint64
	}

	// Everything below is owned by the loop goroutine.
	sock     *socket
	st       state
	dialing  bool   // Dial is waiting for the first welcome
	name     string // as the relay enforced it
	token    string
	epoch    string
	oldEpoch map[string]bool
	cookie   string
	base     uint64 // the room's latest seq at our session's welcome: later events are this session's
	relogin  string // why stHello is a re-login: "restart" or "unknown_session"

	seq *sequencer
	out *outbox

	hs struct { // the hello or resume exchange
		next     time.Time
		first    time.Time
		sent     int
		answered bool // the relay sent something back
		bo       backoff
	}
	hbNext   time.Time // next ping
	lastRecv time.Time // last datagram from the relay
	repair   struct {
		armed bool
		due   time.Time
		last  uint64 // seq.last when the previous request went out
		bo    backoff
	}
	who struct {
		waiters []chan cmdReply
		names   []string
		next    time.Time
		bo      backoff
	}
	quit struct {
		next, until time.Time
		ctxDone     <-chan struct{}
		closer      chan cmdReply
	}
	flushers     []chan cmdReply // Flush calls waiting for an empty outbox
	pending      []Event         // not yet taken from events
	eventsClosed bool
	endErr       error // why the session ended, once stEnded
	exit         bool
}

// Dial logs in to the relay at cfg.Addr as cfg.Name: a padded hello, the
// relay's retry with a cookie, the hello again with it, and the welcome. It
// returns a *RefusedError if the relay refuses the name, ErrNoAnswer if
// nothing came back from cfg.HelloSilence hellos (the relay may be
// classic-only), ErrUnreachable if nothing listens, or ctx's error.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	raddr, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("client: bad relay address %s: %w", cfg.Addr, err)
	}
	c := &Client{
		cfg:      cfg,
		raddr:    raddr,
		cmds:     make(chan command),
		in:       make(chan inbound, 256),
		events:   make(chan Event, 64),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
		dialed:   make(chan error, 1),
		name:     cfg.Name,
		oldEpoch: make(map[string]bool),
		seq:      newSequencer(0),
		out:      newOutbox(cfg.Window),
		dialing:  true,
	}
	c.hs.bo = backoff{first: 250 * time.Millisecond, max: 2 * time.Second}
	// A stuck gap holds back everything after it, and the relay's ring
	// forgets: repair retries sooner than sends do.
	c.repair.bo = backoff{first: 250 * time.Millisecond, max: time.Second}
	c.who.bo = backoff{first: 500 * time.Millisecond, max: 2 * time.Second}
	c.sock, err = openSocket(raddr, 1, c.in, c.stop)
	if err != nil {
		return nil, fmt.Errorf("client: cannot reach relay at %s: %w", cfg.Addr, err)
	}
	go c.loop()
	select {
	case err = <-c.dialed:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		c.shutdown()
		return nil, err
	}
	return c, nil
}

// Name is the name the relay logged us in as (its enforced form).
func (c *Client) Name() string {
	r := c.call(command{kind: cmdName})
	if r.err != nil {
		return c.cfg.Name
	}
	return r.names[0]
}

// Events delivers what happens, in order: room events in room order, each
// seq once, our own chat messages included (Self), and delivery and
// session events. It is closed after EventEnded or Close.
func (c *Client) Events() <-chan Event { return c.events }

// Send queues text as a chat message and returns its id. The message is
// (re)sent with backoff, at most Config.Window at a time, until the relay
// confirms it; it then appears in Events like everyone's. If the relay
// forgets the session (restart, expiry), waiting messages are sent again
// in the new session under new ids. Send fails with ErrTooLong if text
// does not fit in one datagram (see SplitText), ErrQueueFull, or ErrClosed.
func (c *Client) Send(text string) (uint64, error) {
	if text == "" {
		return 0, ErrEmpty
	}
	if !fits(c.cfg.Room, text, c.cfg.MaxDatagram) {
		return 0, ErrTooLong
	}
	r := c.call(command{kind: cmdSend, text: text})
	return r.id, r.err
}

// Flush waits until the relay has confirmed every message sent so far,
// or ctx ends, or the session ends (ErrClosed).
func (c *Client) Flush(ctx context.Context) error {
	reply := make(chan cmdReply, 1)
	select {
	case c.cmds <- command{kind: cmdFlush, reply: reply}:
	case <-c.loopDone:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case r := <-reply:
		return r.err
	case <-c.loopDone:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Who asks the relay who is in the room.
func (c *Client) Who(ctx context.Context) ([]string, error) {
	reply := make(chan cmdReply, 1)
	select {
	case c.cmds <- command{kind: cmdWho, reply: reply}:
	case <-c.loopDone:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-reply:
		return r.names, r.err
	case <-c.loopDone:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Rebind moves the session to a new local socket (a new source port) and
// resumes it there with the token, as after a NAT rebinding. Nobody sees a
// leave or a join and nothing is lost.
func (c *Client) Rebind() error { return c.call(command{kind: cmdRebind}).err }

// Close quits the room, waits for the relay's bye until ctx ends (at most
// 2 s), and stops every goroutine. Events is closed. It is idempotent.
func (c *Client) Close(ctx context.Context) error {
	reply := make(chan cmdReply, 1)
	select {
	case c.cmds <- command{kind: cmdClose, ctx: ctx, reply: reply}:
		select {
		case <-reply:
		case <-c.loopDone:
		}
	case <-c.loopDone:
	}
	c.shutdown()
	return nil
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{
		DatagramsSent:     c.stats.sent.Load(),
		DatagramsReceived: c.stats.received.Load(),
		ChatsSent:         c.stats.chats.Load(),
		Retransmits:       c.stats.retransmits.Load(),
		RepairsSent:       c.stats.repairs.Load(),
		Resumes:           c.stats.resumes.Load(),
		Relogins:          c.stats.relogins.Load(),
	}
}

// call runs a command on the loop and waits for its reply.
func (c *Client) call(cmd command) cmdReply {
	cmd.reply = make(chan cmdReply, 1)
	select {
	case c.cmds <- cmd:
	case <-c.loopDone:
		return cmdReply{err: ErrClosed}
	}
	select {
	case r := <-cmd.reply:
		return r
	case <-c.loopDone:
		return cmdReply{err: ErrClosed}
	}
}

// shutdown makes the loop return (if it has not) and waits for it; the
// loop closes the socket and waits for its reader on the way out.
func (c *Client) shutdown() {
	select {
	case c.cmds <- command{kind: cmdClose, reply: make(chan cmdReply, 1)}:
	case <-c.loopDone:
	}
	<-c.loopDone
}

// loop owns the session until Close.
func (c *Client) loop() {
	defer close(c.loopDone)
	defer func() {
		close(c.stop)
		if c.sock != nil {
			c.sock.close()
		}
		if !c.eventsClosed {
			close(c.events)
		}
		for _, w := range append(c.who.waiters, c.flushers...) {
			w <- cmdReply{err: ErrClosed}
		}
		if c.quit.closer != nil {
			c.quit.closer <- cmdReply{}
		}
	}()
	now := c.cfg.Now()
	c.hs.first, c.hs.next = now, now
	c.lastRecv = now
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for !c.exit {
		now = c.cfg.Now()
		c.onTimers(now)
		if c.exit {
			return
		}
		if len(c.flushers) > 0 && c.out.len() == 0 {
			for _, f := range c.flushers {
				f <- cmdReply{}
			}
			c.flushers = nil
		}
		if c.st == stEnded && len(c.pending) == 0 && !c.eventsClosed {
			close(c.events)
			c.eventsClosed = true
		}
		timer.Reset(max(c.nextWake(now).Sub(now), 0))
		var out chan Event
		var head Event
		if len(c.pending) > 0 && !c.eventsClosed {
			out, head = c.events, c.pending[0]
		}
		select {
		case out <- head:
			c.pending[0] = Event{}
			c.pending = c.pending[1:]
			if len(c.pending) == 0 {
				c.pending = nil // let the backing array go
			}
		case p := <-c.in:
			c.onDatagram(p)
			// Take what else has arrived before running the timers.
			for more := true; more && !c.exit; {
				select {
				case p = <-c.in:
					c.onDatagram(p)
				default:
					more = false
				}
			}
		case cmd := <-c.cmds:
			c.onCommand(cmd)
		case <-c.quit.ctxDone:
			c.exit = true
		case <-timer.C:
		}
	}
}

// emit queues e for the Events channel; the loop hands it over when the
// consumer reads.
func (c *Client) emit(e Event) { c.pending = append(c.pending, e) }

// end finishes the session for good: nothing more is sent, EventEnded is
// the last event.
func (c *Client) end(err error) {
	if c.st == stEnded {
		return
	}
	c.st = stEnded
	c.endErr = err
	if c.dialing {
		c.dialing = false
		c.dialed <- err
		c.exit = true
		return
	}
	e := Event{Type: EventEnded, Err: err, Reason: err.Error()}
	var re *RefusedError
	if errors.As(err, &re) {
		e.Code = re.Code
	}
	c.emit(e)
	for _, w := range append(c.who.waiters, c.flushers...) {
		w <- cmdReply{err: ErrClosed}
	}
	c.who.waiters, c.flushers = nil, nil
}

// onCommand runs an API call on the loop and answers it on cmd.reply: at
// once, or for Who, Flush and a Close that quits, once what it waits for
// has happened.
func (c *Client) onCommand(cmd command) {
	switch cmd.kind {
	case cmdSend:
		switch {
		case c.st == stEnded:
			cmd.reply <- cmdReply{err: ErrClosed}
		case c.out.len() >= c.cfg.MaxQueue:
			cmd.reply <- cmdReply{err: ErrQueueFull}
		default:
			cmd.reply <- cmdReply{id: c.out.add(cmd.text)}
		}
	case cmdWho:
		if c.st == stEnded {
			cmd.reply <- cmdReply{err: ErrClosed}
			return
		}
		if len(c.who.waiters) == 0 {
			c.who.names, c.who.next = nil, time.Time{}
			c.who.bo.reset()
		}
		c.who.waiters = append(c.who.waiters, cmd.reply)
	case cmdName:
		cmd.reply <- cmdReply{names: []string{c.name}}
	case cmdFlush:
		if c.st == stEnded {
			cmd.reply <- cmdReply{err: ErrClosed}
			return
		}
		c.flushers = append(c.flushers, cmd.reply)
	case cmdRebind:
		if c.st == stEnded || c.st == stQuitting {
			cmd.reply <- cmdReply{err: ErrClosed}
			return
		}
		s, err := openSocket(c.raddr, c.sock.gen+1, c.in, c.stop)
		if err != nil {
			cmd.reply <- cmdReply{err: fmt.Errorf("client: rebind: %w", err)}
			return
		}
		c.sock.close()
		c.sock = s
		c.cookie = "" // cookies are per address
		switch c.st {
		case stMember, stResume:
			c.startResume("rebind to a new local port")
		case stHello:
			c.hs.next = time.Time{}
		}
		cmd.reply <- cmdReply{}
	case cmdClose:
		if c.st == stMember || c.st == stResume {
			c.st = stQuitting
			now := c.cfg.Now()
			c.quit.next, c.quit.until = now, now.Add(quitMax)
			if cmd.ctx != nil {
				c.quit.ctxDone = cmd.ctx.Done()
			}
			c.quit.closer = cmd.reply
			return
		}
		if c.st == stQuitting {
			// A second Close (or shutdown) while quitting: stop now.
			c.exit = true
			cmd.reply <- cmdReply{}
			return
		}
		if c.dialing {
			c.dialing = false
			c.dialed <- ErrClosed
		}
		c.exit = true
		cmd.reply <- cmdReply{}
	}
}

// onDatagram handles what one socket reader handed over: a v2 datagram's
// frames, one by one, or a read error (ErrUnreachable while Dial has heard
// nothing back). Garbage, and anything from a replaced socket or after the
// end, is dropped unanswered.
func (c *Client) onDatagram(p inbound) {
	if c.st == stEnded || p.gen != c.sock.gen {
		return // the session is over, or an old socket's
	}
	if p.err != nil {
		if c.dialing && !c.hs.answered {
			c.end(ErrUnreachable)
		}
		return
	}
	c.stats.received.Add(1)
	frames, err := wire.DecodeV2(nil, p.data)
	if err != nil {
		return // not v2, or garbage: never answered
	}
	c.lastRecv = c.cfg.Now()
	c.hs.answered = true
	var delivered []Event
	for i := range frames {
		delivered = c.onFrame(&frames[i], delivered)
		if c.exit || c.st == stEnded {
			break
		}
	}
}

// onFrame handles one frame; delivered is scratch space for room events.
func (c *Client) onFrame(f *wire.Frame, scratch []Event) []Event {
	if f.Room != "" && f.Room != c.cfg.Room {
		return scratch
	}
	now := c.cfg.Now()
	switch f.T {
	case wire.FrameRetry:
		if (c.st == stHello || c.st == stResume) && f.Cookie != "" {
			c.cookie = f.Cookie
			c.hs.next = time.Time{} // again at once, with the cookie
		}
	case wire.FrameWelcome:
		c.onWelcome(f, now)
	case wire.FrameRefused:
		c.onRefused(f)
	case wire.FrameChat, wire.FrameJoin, wire.FrameLeave, wire.FrameTimeout, wire.FrameNotice:
		if !c.sameEpoch(f.Epoch) {
			return scratch
		}
		if f.T == wire.FrameChat && f.ID != 0 && f.From == c.name && f.Seq > c.base && c.token != "" {
			c.out.ack(f.ID) // our echo
		}
		scratch = c.seq.add(f, scratch[:0])
		c.deliver(scratch)
	case wire.FrameMissed:
		if !c.sameEpoch(f.Epoch) {
			return scratch
		}
		scratch = c.seq.missed(f.FromSeq, f.ToSeq, scratch[:0])
		c.deliver(scratch)
	case wire.FrameAck:
		if c.out.ack(f.ID) && f.Seq != 0 {
			c.seq.learn(f.Seq) // our message exists: fetch it if we lack it
		}
	case wire.FramePong:
		if c.sameEpoch(f.Epoch) && c.st == stMember {
			c.seq.learn(f.Seq)
		}
	case wire.FrameMembers:
		if len(c.who.waiters) > 0 {
			c.who.names = append(c.who.names, f.Names...)
			if !f.More {
				for _, w := range c.who.waiters {
					w <- cmdReply{names: c.who.names}
				}
				c.who.waiters, c.who.names = nil, nil
			}
		}
	case wire.FrameBye:
		switch c.st {
		case stQuitting:
			c.exit = true
		case stMember, stResume:
			c.end(ErrEnded)
		}
	case wire.FrameThrottled:
		d := time.Duration(f.RetryMS) * time.Millisecond
		c.out.throttle(now.Add(d))
		c.emit(Event{Type: EventThrottled, RetryAfter: d, ID: f.ID, Reason: f.Reason})
	case wire.FrameRestart:
		if f.Epoch == "" || f.Epoch == c.epoch {
			c.relayRestarting()
		}
	case wire.FrameError:
		if f.ID != 0 {
			c.out.ack(f.ID) // refused for good: do not retransmit it
		}
		c.emit(Event{Type: EventError, Code: f.Code, Reason: f.Reason, ID: f.ID})
		if f.Code == "removed" && f.ID == 0 && c.st != stQuitting {
			c.end(&KickedError{Reason: f.Reason})
		}
	}
	return scratch
}

// sameEpoch reports whether an event of epoch belongs to our sequence. An
// unknown epoch means the relay restarted without our seeing its restart
// frame: log in again.
func (c *Client) sameEpoch(epoch string) bool {
	switch {
	case c.epoch == "" || c.st == stEnded || c.st == stQuitting:
		return c.epoch != "" && epoch == c.epoch
	case epoch == c.epoch:
		return true
	case c.oldEpoch[epoch]:
		return false // a straggler from before a restart
	case c.st == stHello:
		return false // logging in again already
	}
	c.relayRestarting()
	return false
}

// deliver queues delivered room events and reacts to our own removal.
func (c *Client) deliver(evs []Event) {
	for _, e := range evs {
		if e.Type == EventChat && e.From == c.name {
			e.Self = true
		}
		c.emit(e)
		if e.From != c.name || e.Seq <= c.base || e.History {
			continue
		}
		switch {
		case e.Type == EventLeave && e.Reason != "quit" && c.st != stQuitting:
			c.end(&KickedError{Reason: e.Reason})
			return
		case e.Type == EventTimeout && c.st == stMember:
			// The relay evicted us for silence; the token is gone, so the
			// resume is refused and we log in again.
			c.startResume("the relay timed us out")
		}
	}
}

// onTimers sends whatever is due at now.
func (c *Client) onTimers(now time.Time) {
	var frames []*wire.Frame
	switch c.st {
	case stHello, stResume:
		if now.Before(c.hs.next) {
			break
		}
		if c.dialing {
			if c.hs.sent >= c.cfg.HelloSilence && !c.hs.answered &&
				now.Sub(c.hs.first) >= time.Duration(c.cfg.HelloSilence)*c.cfg.HelloEvery {
				c.end(ErrNoAnswer)
				return
			}
			if c.hs.sent >= maxDialTries {
				c.end(ErrNoAnswer)
				return
			}
		}
		frames = append(frames, c.handshakeFrame())
		c.hs.sent++
		if c.dialing {
			c.hs.next = now.Add(c.cfg.HelloEvery)
		} else {
			c.hs.next = now.Add(c.hs.bo.next(c.cfg.Rand))
		}
	case stMember:
		if now.Sub(c.lastRecv) >= c.cfg.DeadAfter {
			c.startResume("no answer from the relay")
			c.onTimers(now)
			return
		}
		for _, m := range c.out.due(now) {
			frames = append(frames, &wire.Frame{T: wire.FrameChat, Room: c.cfg.Room, ID: m.id, Text: m.text})
			c.stats.chats.Add(1)
			if m.sent > 1 {
				c.stats.retransmits.Add(1)
			}
		}
		frames = c.repairFrames(now, frames)
		if len(c.who.waiters) > 0 && !now.Before(c.who.next) {
			c.who.names = nil // a fresh answer
			frames = append(frames, &wire.Frame{T: wire.FrameWho, Room: c.cfg.Room})
			c.who.next = now.Add(c.who.bo.next(c.cfg.Rand))
		}
		if !now.Before(c.hbNext) || len(frames) > 0 && now.Add(c.cfg.HeartbeatEvery/2).After(c.hbNext) {
			// A ping rides along when one is nearly due anyway.
			frames = append(frames, &wire.Frame{T: wire.FramePing, Room: c.cfg.Room, Last: c.seq.last})
			c.hbNext = now.Add(c.cfg.HeartbeatEvery)
		}
	case stQuitting:
		if !now.Before(c.quit.until) {
			c.exit = true
			return
		}
		if !now.Before(c.quit.next) {
			frames = append(frames, &wire.Frame{T: wire.FrameQuit, Room: c.cfg.Room})
			c.quit.next = now.Add(quitWait)
		}
	}
	c.sendFrames(frames)
}

// repairFrames arms, fires and backs off the gap repair.
func (c *Client) repairFrames(now time.Time, frames []*wire.Frame) []*wire.Frame {
	if !c.seq.open() {
		c.repair.armed = false
		return frames
	}
	if !c.repair.armed {
		c.repair.armed = true
		c.repair.bo.reset()
		c.repair.last = c.seq.last
		c.repair.due = now.Add(repairMinDelay + time.Duration(c.cfg.Rand.Int64N(int64(repairMaxDelay-repairMinDelay))))
		return frames
	}
	if now.Before(c.repair.due) {
		return frames
	}
	if c.seq.last > c.repair.last {
		c.repair.bo.reset() // progress: the next request comes soon again
		c.repair.last = c.seq.last
	}
	for _, r := range c.seq.gaps(repairRanges) {
		for from := r.from; from <= r.to; from += maxRepairSpan {
			frames = append(frames, &wire.Frame{T: wire.FrameRepair, Room: c.cfg.Room, FromSeq: from, ToSeq: min(r.to, from+maxRepairSpan-1)})
			c.stats.repairs.Add(1)
			if from+maxRepairSpan < from { // overflow guard
				break
			}
		}
	}
	c.repair.due = now.Add(c.repair.bo.next(c.cfg.Rand))
	return frames
}

// sendFrames packs frames into as few datagrams as MaxDatagram allows and
// sends them. A hello or resume goes alone, so its padding counts.
func (c *Client) sendFrames(frames []*wire.Frame) {
	if len(frames) == 0 || c.sock == nil {
		return
	}
	var b []byte
	flush := func() {
		if len(b) > len(wire.V2Magic) {
			if c.sock.write(b) == nil {
				c.stats.sent.Add(1)
			}
		}
		b = wire.AppendV2Header(b[:0])
	}
	b = wire.AppendV2Header(make([]byte, 0, c.cfg.MaxDatagram))
	for _, f := range frames {
		n := len(b)
		b = wire.AppendFrame(b, f)
		if len(b) > c.cfg.MaxDatagram && n > len(wire.V2Magic) {
			line := append([]byte(nil), b[n:]...)
			b = b[:n]
			flush()
			b = append(b, line...)
		}
	}
	flush()
}

// nextWake is when onTimers next has something to do.
func (c *Client) nextWake(now time.Time) time.Time {
	t := now.Add(time.Hour)
	earlier := func(u time.Time) {
		if u.Before(t) {
			t = u
		}
	}
	switch c.st {
	case stHello, stResume:
		earlier(c.hs.next)
	case stMember:
		earlier(c.hbNext)
		earlier(c.lastRecv.Add(c.cfg.DeadAfter))
		if d, ok := c.out.deadline(); ok {
			earlier(d)
		}
		if c.seq.open() {
			if c.repair.armed {
				earlier(c.repair.due)
			} else {
				earlier(now)
			}
		}
		if len(c.who.waiters) > 0 {
			earlier(c.who.next)
		}
	case stQuitting:
		earlier(c.quit.next)
		earlier(c.quit.until)
	}
	return t
}
