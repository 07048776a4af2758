package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// Config configures a Client. Zero values mean the defaults named.
type Config struct {
	// Addr is the relay's HOST:PORT. Addr or Addrs is required.
	Addr string
	// Addrs are relay addresses, HOST:PORT each, tried after Addr: the
	// nodes of a cluster that share sessions, in order of preference. The
	// client's list is Addr (if set) then Addrs, without duplicates. Dial
	// logs in at the first of them that answers; once logged in, when the
	// relay in use stops answering, the client fails over to the next
	// address (round robin) and resumes the session there (see Failover in
	// the package documentation). With one address nothing of this
	// happens: the client resumes and logs in again at that address only.
	Addrs []string
	// Name is the name to log in as. Required.
	Name string
	// Room is the room the hello names, where the session starts and
	// where Send sends. Default wire.RoomMain, the only room a hello may
	// name; Join enters others.
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
	// member, before the client decides the path broke and resumes (with
	// several addresses, at the next one). Default 4 heartbeats.
	DeadAfter time.Duration
	// HelloEvery is the interval of hellos while Dial logs in. Default
	// 600 ms.
	HelloEvery time.Duration
	// HelloSilence is how many hellos Dial sends without any answer (and
	// HelloSilence*HelloEvery of silence) before it gives up on an address
	// (ErrNoAnswer, if it was the last). Default 6: with the default
	// interval, 3.6 s. With several addresses a resume or a new login after
	// a failover waits as long at each address before moving on.
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
	if len(c.addrList()) == 0 || c.Name == "" {
		return errors.New("client: Addr (or Addrs) and Name are required")
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

// addrList is the client's relay addresses: Addr, then Addrs, without
// empty ones and duplicates, in that order.
func (c *Config) addrList() []string {
	var list []string
	for _, a := range append([]string{c.Addr}, c.Addrs...) {
		if a != "" && !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
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
	roundFirst     = time.Second            // with several addresses, the wait after a round of them all went unanswered...
	roundMax       = 10 * time.Second       // ...doubling up to this
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
	Failovers         uint64 // moves to another relay address after login
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
	room  string // send, join, who: the room as named; msg: the recipient
	key   string // send, join, part, who: the room's compare key
	pass  string // join: the room's key (password)
	ctx   context.Context
	reply chan cmdReply // buffered 1

	before uint64 // history: the page asked for
	limit  int
}

type cmdKind int

const (
	cmdSend cmdKind = iota
	cmdMsg
	cmdJoin
	cmdPart
	cmdWho
	cmdRooms
	cmdName
	cmdRev
	cmdJoined
	cmdFlush
	cmdRebind
	cmdClose
	cmdHistory
)

type cmdReply struct {
	id     uint64
	names  []string
	rooms  []RoomInfo
	joined []JoinedRoom
	rev    uint64
	hist   History
	err    error
}

// Client is one v2 session with a relay. Its methods are safe for
// concurrent use.
type Client struct {
	cfg    Config
	relays []relayAddr // Config.addrList, resolved

	cmds     chan command
	in       chan inbound
	events   chan Event
	stop     chan struct{} // closed when the loop ends: readers stop
	loopDone chan struct{} // closed when the loop has returned
	dialed   chan error    // Dial's outcome, buffered 1

	stats struct {
		sent, received, chats, retransmits, repairs, resumes, relogins, failovers atomic.Uint64
	}
	at atomic.Int32 // cur, for Addr

	// Everything below is owned by the loop goroutine.
	sock     *socket
	cur      int // the relay in use: relays[cur]; sock is connected to it
	st       state
	dialing  bool   // Dial is waiting for the first welcome
	name     string // as the relay enforced it
	token    string
	epoch    string // main's epoch at the session's welcome: a restart changes it
	oldEpoch map[string]bool
	cookie   string
	rev      uint64 // the revision the relay speaks with us (its welcome's)
	relogin  string // why stHello is a re-login: "restart" or "unknown_session"

	rooms    []*room             // the rooms we are in or joining, main included, in join order
	byKey    map[string]*room    // rooms by compare key
	inbox    *room               // revision 1: our inbox "@"; nil with revision 0
	keys     map[string]string   // room name -> compare key, a cache
	removed  *wire.Frame         // an error "removed" for main, while its datagram is read
	parting  map[string]*partReq // parts not yet answered, by compare key
	whos     map[string]*listReq // who requests, by the room's compare key
	roomList *listReq            // a rooms request
	out      *outbox

	// histories are the history requests waiting for their answers
	// (history.go); nil until the first.
	histories map[histKey]*histReq

	hs struct { // the hello or resume exchange
		next     time.Time
		first    time.Time // when this handshake began at this address
		sent     int
		answered bool // the relay sent something back
		bo       backoff
	}
	fo       failover  // moving between relay addresses
	hbNext   time.Time // next ping
	lastRecv time.Time // last datagram from the relay
	quit     struct {
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

// Dial logs in as cfg.Name at the first relay address (Config.Addr, then
// Config.Addrs) that answers: a padded hello, the relay's retry with a
// cookie, the hello again with it, and the welcome. It tries the addresses
// in order, leaving one at once when nothing listens there (ICMP port
// unreachable) and after cfg.HelloSilence unanswered hellos when it is
// silent. It returns a *RefusedError if a relay refuses the name (the
// other addresses are not asked: a cluster's nodes share names),
// ErrNoAnswer if no address answered and one at least was silent (it may
// be a classic-only relay), ErrUnreachable if nothing listens at any, or
// ctx's error.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	var relays []relayAddr
	for _, a := range cfg.addrList() {
		raddr, err := net.ResolveUDPAddr("udp", a)
		if err != nil {
			return nil, fmt.Errorf("client: bad relay address %s: %w", a, err)
		}
		relays = append(relays, relayAddr{name: a, udp: raddr})
	}
	c := &Client{
		cfg:      cfg,
		relays:   relays,
		cmds:     make(chan command),
		in:       make(chan inbound, 256),
		events:   make(chan Event, 64),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
		dialed:   make(chan error, 1),
		name:     cfg.Name,
		oldEpoch: make(map[string]bool),
		byKey:    make(map[string]*room),
		keys:     make(map[string]string),
		parting:  make(map[string]*partReq),
		whos:     make(map[string]*listReq),
		out:      newOutbox(cfg.Window),
		dialing:  true,
	}
	c.out.ready = c.sendable
	c.hs.bo = backoff{first: 250 * time.Millisecond, max: 2 * time.Second}
	c.fo.round = backoff{first: roundFirst, max: roundMax}
	sock, err := openSocket(relays[0].udp, 1, c.in, c.stop)
	if err != nil {
		return nil, fmt.Errorf("client: cannot reach relay at %s: %w", relays[0].name, err)
	}
	c.sock = sock
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

// Addr is the address of the relay the session is with, or, while it
// fails over, is trying; after the end, the last one. It is spelled as in
// Config.
func (c *Client) Addr() string { return c.relays[c.at.Load()].name }

// Events delivers what happens, in order: room events in room order, each
// seq once, our own chat messages included (Self), and delivery and
// session events. It is closed after EventEnded or Close.
func (c *Client) Events() <-chan Event { return c.events }

// Send queues text as a chat message for the room Config.Room (main) and
// returns its id. The message is (re)sent with backoff, at most
// Config.Window at a time, until the relay confirms it; it then appears in
// Events like everyone's. If the relay forgets the session (restart,
// expiry), waiting messages are sent again in the new session under new
// ids. Send fails with ErrTooLong if text does not fit in one datagram
// (see SplitText), ErrQueueFull, ErrNotInRoom (we left main), or
// ErrClosed.
func (c *Client) Send(text string) (uint64, error) { return c.SendTo(c.cfg.Room, text) }

// SendTo is Send for a room we are in, or joining: then the message waits
// until the join is answered, and is dropped with an EventError (its ID)
// if the join is refused. Message ids are one sequence per session, shared
// with Msg.
func (c *Client) SendTo(room, text string) (uint64, error) {
	if text == "" {
		return 0, ErrEmpty
	}
	key, err := roomKeyOf(room)
	if err != nil {
		return 0, err
	}
	if !fits(room, text, c.cfg.MaxDatagram) {
		return 0, ErrTooLong
	}
	r := c.call(command{kind: cmdSend, text: text, room: room, key: key})
	return r.id, r.err
}

// Msg queues text as a direct message to the member called to, and
// returns its id. It is retransmitted like a chat until its echo, the dm
// event in our own inbox (an EventDM with Self), comes; a refusal (no such
// member, a recipient that cannot receive direct messages) is an
// EventError with its ID and To. Msg fails with ErrUnsupported when the
// relay speaks revision 0, ErrTooLong (see SplitMsgFor), an error wrapping
// wire.ErrNameInvalid for a name nobody can hold, ErrQueueFull or
// ErrClosed.
func (c *Client) Msg(to, text string) (uint64, error) {
	if text == "" {
		return 0, ErrEmpty
	}
	name, _, err := wire.CanonicalName(to)
	if errors.Is(err, wire.ErrNameInvalid) {
		return 0, fmt.Errorf("client: msg to %q: %w", to, err)
	}
	if err == nil {
		to = name
	}
	if !fitsMsg(to, text, c.cfg.MaxDatagram) {
		return 0, ErrTooLong
	}
	r := c.call(command{kind: cmdMsg, text: text, room: to})
	return r.id, r.err
}

// Join joins room, with key if the room is locked. It returns at once: the
// result is an event, EventJoined (with the room's Topic) once the relay
// welcomes us, then the room's backlog and its events; or EventError with
// the Room and the relay's Code (wire.CodeBadKey, wire.CodeRoomFull, ...).
// Joining a room we are in emits EventJoined again. Join fails with
// ErrUnsupported when the relay speaks revision 0, an error wrapping
// wire.ErrRoomInvalid for a name no room can have, or ErrClosed.
func (c *Client) Join(room, key string) error {
	k, err := roomKeyOf(room)
	if err != nil {
		return err
	}
	return c.call(command{kind: cmdJoin, room: room, key: k, pass: key}).err
}

// Part leaves room: its events stop at once, messages still waiting for it
// are dropped (an EventError each), and EventParted follows when the relay
// confirms. It fails with ErrNotInRoom, ErrUnsupported or ErrClosed.
func (c *Client) Part(room string) error {
	k, err := roomKeyOf(room)
	if err != nil {
		return err
	}
	return c.call(command{kind: cmdPart, room: room, key: k}).err
}

// Joined lists the rooms we are in or joining, main included unless we
// left it, in the order we joined them.
func (c *Client) Joined() []JoinedRoom { return c.call(command{kind: cmdJoined}).joined }

// Rev is the revision of v2 the relay speaks with this session: 0 (main
// only) or 1 (rooms and direct messages).
func (c *Client) Rev() uint64 { return c.call(command{kind: cmdRev}).rev }

// Flush waits until the relay has confirmed every message sent so far,
// or ctx ends, or the session ends (ErrClosed).
func (c *Client) Flush(ctx context.Context) error {
	return c.await(ctx, command{kind: cmdFlush}).err
}

// Who asks the relay who is in the room Config.Room (main).
func (c *Client) Who(ctx context.Context) ([]string, error) { return c.WhoIn(ctx, c.cfg.Room) }

// WhoIn asks the relay who is in room: any room that is not locked, or
// one we are in. A refusal is a *RelayError.
func (c *Client) WhoIn(ctx context.Context, room string) ([]string, error) {
	key, err := roomKeyOf(room)
	if err != nil {
		return nil, err
	}
	r := c.await(ctx, command{kind: cmdWho, room: room, key: key})
	return r.names, r.err
}

// Rooms lists the relay's rooms, sorted by name. It fails with
// ErrUnsupported when the relay speaks revision 0.
func (c *Client) Rooms(ctx context.Context) ([]RoomInfo, error) {
	r := c.await(ctx, command{kind: cmdRooms})
	return r.rooms, r.err
}

// roomKeyOf validates a room name and returns its compare key.
func roomKeyOf(room string) (string, error) {
	if room == wire.RoomMain {
		return room, nil
	}
	_, key, err := wire.CanonicalRoom(room)
	if err != nil {
		return "", fmt.Errorf("client: room %q: %w", room, err)
	}
	return key, nil
}

// await runs a command whose answer comes later (Flush, Who, Rooms) and
// waits for it, or for ctx, or for the end of the session.
func (c *Client) await(ctx context.Context, cmd command) cmdReply {
	cmd.reply = make(chan cmdReply, 1)
	select {
	case c.cmds <- cmd:
	case <-c.loopDone:
		return cmdReply{err: ErrClosed}
	case <-ctx.Done():
		return cmdReply{err: ctx.Err()}
	}
	select {
	case r := <-cmd.reply:
		return r
	case <-c.loopDone:
		return cmdReply{err: ErrClosed}
	case <-ctx.Done():
		return cmdReply{err: ctx.Err()}
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
		Failovers:         c.stats.failovers.Load(),
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
		c.failWaiters()
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
	c.failWaiters()
}

// failWaiters answers every Flush, Who and Rooms call waiting with
// ErrClosed.
func (c *Client) failWaiters() {
	for _, w := range c.flushers {
		w <- cmdReply{err: ErrClosed}
	}
	c.flushers = nil
	for key, w := range c.whos {
		w.answer(cmdReply{err: ErrClosed})
		delete(c.whos, key)
	}
	if c.roomList != nil {
		c.roomList.answer(cmdReply{err: ErrClosed})
		c.roomList = nil
	}
	c.failHistories(ErrClosed)
}

// onCommand runs an API call on the loop and answers it on cmd.reply: at
// once, or for Who, Rooms, Flush and a Close that quits, once what it
// waits for has happened.
func (c *Client) onCommand(cmd command) {
	switch cmd.kind {
	case cmdSend, cmdMsg, cmdJoin, cmdPart, cmdWho, cmdRooms, cmdFlush:
		if c.st == stEnded {
			cmd.reply <- cmdReply{err: ErrClosed}
			return
		}
		if c.rev < 1 && (cmd.kind == cmdMsg || cmd.kind == cmdJoin || cmd.kind == cmdPart || cmd.kind == cmdRooms ||
			(cmd.key != wire.RoomMain && (cmd.kind == cmdSend || cmd.kind == cmdWho))) {
			cmd.reply <- cmdReply{err: ErrUnsupported}
			return
		}
	}
	switch cmd.kind {
	case cmdSend:
		r := c.byKey[cmd.key]
		switch {
		case r == nil:
			cmd.reply <- cmdReply{err: ErrNotInRoom}
		case !fits(r.name, cmd.text, c.cfg.MaxDatagram):
			cmd.reply <- cmdReply{err: ErrTooLong}
		case c.out.len() >= c.cfg.MaxQueue:
			cmd.reply <- cmdReply{err: ErrQueueFull}
		default:
			cmd.reply <- cmdReply{id: c.out.add(cmd.key, "", cmd.text)}
		}
	case cmdMsg:
		if c.out.len() >= c.cfg.MaxQueue {
			cmd.reply <- cmdReply{err: ErrQueueFull}
			return
		}
		cmd.reply <- cmdReply{id: c.out.add("", cmd.room, cmd.text)}
	case cmdJoin:
		cmd.reply <- cmdReply{err: c.onJoin(cmd.room, cmd.key, cmd.pass)}
	case cmdPart:
		cmd.reply <- cmdReply{err: c.onPart(cmd.key)}
	case cmdWho:
		w := c.whos[cmd.key]
		if w == nil {
			w = newListReq(cmd.room)
			if r := c.byKey[cmd.key]; r != nil {
				w.room = r.name
			}
			c.whos[cmd.key] = w
		}
		w.waiters = append(w.waiters, cmd.reply)
	case cmdRooms:
		if c.roomList == nil {
			c.roomList = newListReq("")
		}
		c.roomList.waiters = append(c.roomList.waiters, cmd.reply)
	case cmdRev:
		cmd.reply <- cmdReply{rev: c.rev}
	case cmdJoined:
		cmd.reply <- cmdReply{joined: c.joinedRooms()}
	case cmdName:
		cmd.reply <- cmdReply{names: []string{c.name}}
	case cmdFlush:
		c.flushers = append(c.flushers, cmd.reply)
	case cmdHistory:
		c.onHistory(cmd)
	case cmdRebind:
		if c.st == stEnded || c.st == stQuitting {
			cmd.reply <- cmdReply{err: ErrClosed}
			return
		}
		s, err := openSocket(c.relays[c.cur].udp, c.sock.gen+1, c.in, c.stop)
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

// sendable reports whether the outbox may send m now: a chat once its
// room is joined, a msg once the relay speaks revision 1.
func (c *Client) sendable(m *outMsg) bool {
	if m.to != "" {
		return c.rev >= 1
	}
	r := c.byKey[m.room]
	return r != nil && !r.joining
}
