package relay

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"go.uber.org/zap"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// Fan-out: how the room's events leave.
//
// broadcast sequences an event and queues it in the outbox. A worker
// flushes after each batch of datagrams it took from a sender's lane (the
// dispatcher's afterBatch), the admin requests and the sweeper after their
// own broadcast: whoever flushes while nobody is sending becomes the sender
// and sends until the outbox is empty (flat combining, as nats-server
// flushes the clients a read loop touched once per read). Nothing ever
// waits for more: at low load a lane's batch is one datagram and its event
// leaves at once, from the goroutine that made it, with no hand-off; under
// load, the events of a lane's batch and those queued during a round leave
// together:
//
//   - v2 members receive them packed into datagrams of at most SendBudget
//     bytes (LoopbackSendBudget for members on loopback): CR2 and one frame
//     line after another, the same bytes for every v2 member, so several
//     events cost one datagram per member; members of revision 2 get them
//     compact (a context line states the events' room, epoch and first
//     seq once), the same bytes for all of them; members of revision 3
//     get chats as rows without their ids, but a member that sent a chat
//     of the group, whose copy keeps its ids (its acknowledgement): one
//     packing per revision present and per such sender, never one per
//     member;
//   - classic members receive one line per datagram, as classic clients
//     expect, each line encoded once for all of them.
//
// Every datagram goes out through Conn.SendAll (sendmmsg on Linux, up to 64
// destinations per system call, never waiting). A datagram the kernel
// refuses is counted as a send error; a v2 member repairs what it carried.

// broadcast sequences ev as room r's next event and queues it for r's
// members on this node: v2 members get the frame (the sender too: its echo
// is its ack); classic members except except get the classic line. It is
// sent by the next flush, which a caller outside a handler MUST make. It
// reports false if the room's log refused the event (it was not sent).
func (s *Server) broadcast(r *room, ev *wire.Frame, classic []byte, except *Member, kind string) bool {
	return s.broadcastTo(r, r.Members(), ev, classic, except, kind)
}

// broadcastTo is broadcast to a given snapshot of members (immutable). The
// log sequences the event first, under no lock of the fan-out; the room's
// feed then queues it in sequence order.
func (s *Server) broadcastTo(r *room, members []*Member, ev *wire.Frame, classic []byte, except *Member, kind string) bool {
	ev.Room = r.name
	seq, line, err := r.log.Append(*ev)
	ev.Seq = seq
	if err != nil {
		s.logRefused(r, kind, err)
		return false
	}
	r.deliver(seq, Event{Members: members, V2: line, Classic: classic, Except: except}, s.out)
	s.obs.Broadcast(kind)
	return true
}

// broadcastChat is broadcast for m's v2 chat with the client's id. Where
// the room's log stores an event once per id (OnceAppender) the chat is
// appended under m's session and that id, and a duplicate (a chat
// retransmitted after its first copy was stored, before a crash or on a
// relay that died since) is acknowledged to m alone, with the first copy.
func (s *Server) broadcastChat(r *room, ev *wire.Frame, classic []byte, m *Member, id uint64) bool {
	once, ok := r.log.(OnceAppender)
	if !ok {
		return s.broadcast(r, ev, classic, m, KindChat)
	}
	ev.Room = r.name
	seq, line, dup, err := once.AppendOnce(*ev, m.ID+"/"+strconv.FormatUint(id, 10))
	ev.Seq = seq
	if err != nil {
		s.logRefused(r, KindChat, err)
		return false
	}
	if dup {
		s.obs.DatagramDropped(DropDuplicate)
		s.out.SendFrames(m, [][]byte{line})
		return true
	}
	r.deliver(seq, Event{Members: r.Members(), V2: line, Classic: classic, Except: m}, s.out)
	s.obs.Broadcast(KindChat)
	return true
}

// logRefused logs an event the room's log did not store: at debug when the
// store is unavailable (its state is logged once when it changes, and
// /healthz and chatrelay_nats_connected say it), else as a warning.
func (s *Server) logRefused(r *room, kind string, err error) {
	lvl := zap.WarnLevel
	if errors.Is(err, ErrUnavailable) {
		lvl = zap.DebugLevel
	}
	if ce := s.log.Check(lvl, "room log refused an event"); ce != nil {
		ce.Write(zap.String("room", r.name), zap.String("kind", kind), zap.Error(err))
	}
}

// enter puts m in room r, unless m left the relay meanwhile (a kick or an
// eviction racing the login), and returns the members to tell about the
// join. If reply is not nil it is queued for m first, under r's feed lock:
// no event of r can come between, so m gets reply before any event of r,
// and is in r once it has reply.
func (s *Server) enter(r *room, m *Member, reply []byte) ([]*Member, bool) {
	var (
		others []*Member
		ok     bool
	)
	if reply != nil {
		r.feed.mu.Lock()
		s.out.Queue(m, reply)
		others, ok = r.join(m)
		r.feed.mu.Unlock()
	} else {
		others, ok = r.join(m)
	}
	if !ok {
		return nil, false
	}
	if !s.reg.Has(m) { // removed while joining: remove saw no room yet
		r.leave(m)
		return nil, false
	}
	return others, true
}

// flushBatch is flush after a lane's batch. A panic while sending (a bug)
// is recovered and counted here, as a handler's is, so that the worker's
// accounting in the dispatcher stays right.
func (s *Server) flushBatch() {
	defer func() {
		if v := recover(); v != nil {
			s.obs.Panic()
			s.log.Error("fan-out panic recovered", zap.Any("panic", v), zap.StackSkip("stack", 1))
		}
	}()
	s.out.Flush()
}

// outEvent is one queued broadcast, or one datagram for one address
// (direct != nil): a reply queued behind the broadcasts before it.
type outEvent struct {
	members []*Member   // the snapshot it goes to
	v2      []byte      // the frame as one JSON line, shared with the ring
	classic []byte      // the classic line; a direct datagram's bytes
	except  *Member     // gets no classic line (the sender of a classic chat)
	direct  *udpio.Dest // where a direct datagram goes

	// cut is where v2 holds its room, seq and epoch: its compact line for
	// members of revision 2, found once per event.
	cut wire.EventCut
}

// outboxLimit bounds the queued events while a goroutine is sending: a
// producer that finds this many waits for the sender to take them
// (backpressure reaches the dispatcher's bounded queue, where excess is
// dropped and counted). With nobody sending, what waits for the next flush
// is bounded by the lane batches being handled (workers × sender queue).
const outboxLimit = 4096

// fanout is the room's outboxes: one per shard of the members, so that as
// many goroutines can send at once, each to its own members (a member's
// shard is fixed by its address, so its events stay in order). Every event
// is queued in every shard.
//
// fanout is the node's Delivery: the only code that sends to members.
type fanout struct {
	shards []*outbox
	next   atomic.Uint32 // rotates the shard a flush starts with

	obs                Observer
	log                *zap.Logger
	budget, loopBudget int         // SendBudget, LoopbackSendBudget
	conn               *udpio.Conn // set by Serve before the first datagram is read
}

func newFanout(shards int, obs Observer, log *zap.Logger, budget, loopBudget int) *fanout {
	f := &fanout{shards: make([]*outbox, max(shards, 1)), obs: obs, log: log, budget: budget, loopBudget: loopBudget}
	for i := range f.shards {
		f.shards[i] = newOutbox(i, len(f.shards))
	}
	return f
}

// shardOf is the shard that sends to addr.
func (f *fanout) shardOf(addr netip.AddrPort) *outbox {
	if len(f.shards) == 1 {
		return f.shards[0]
	}
	a := addr.Addr().As16()
	h := uint32(addr.Port()) ^ uint32(a[15])<<8 ^ uint32(a[14])<<16
	return f.shards[h%uint32(len(f.shards))]
}

// Publish queues e in every shard. Callers publish a room's events in
// sequence order (room.feed sees to it), and the outboxes keep that order.
// The event's compact form (revision 2) is found here, once for every
// shard and member.
func (f *fanout) Publish(e Event) {
	ev := outEvent{members: e.Members, v2: e.V2, cut: wire.CutEvent(e.V2), classic: e.Classic, except: e.Except}
	for _, o := range f.shards {
		o.push(ev)
	}
}

// waitIdle returns once no shard has anything queued or is sending.
func (f *fanout) waitIdle() {
	for _, o := range f.shards {
		o.waitIdle()
	}
}

// outbox holds the broadcasts waiting to be sent to one shard of the
// members, in sequence order.
type outbox struct {
	index, of int // this is shard index of of

	mu      sync.Mutex // protects pending and sending; taken under feed.mu
	pending []outEvent
	sending bool      // a goroutine is in flush's loop
	changed sync.Cond // on mu: pending was taken, or sending ended

	// Owned by the goroutine that set sending.
	taken   []outEvent
	classic []*udpio.Dest
	v2      []*udpio.Dest
	v2c     []*udpio.Dest // the v2 members of revision 2: compact datagrams
	v2r     []*udpio.Dest // the v2 members of revision 3 but own's: rows without ids
	own     []*Member     // the members of revision 3 who sent a chat of the group: a packing each
	senders []*Member     // rowSenders' result
	one     [1]*udpio.Dest
	v2lo    []*udpio.Dest // the v2 members on loopback
	arena   []byte        // the packed v2 datagrams of one sendEvents, until the batch has sent them
	batch   *udpio.Batch  // every datagram of one sendEvents, many per system call
}

func newOutbox(index, of int) *outbox {
	o := &outbox{index: index, of: of}
	o.changed.L = &o.mu
	return o
}

// push queues ev. It is called under the room's feed.mu, so a room's
// events are queued in sequence order. It waits only while the outbox is full and someone else
// is sending (which never blocks), never for I/O.
func (o *outbox) push(ev outEvent) {
	o.mu.Lock()
	for len(o.pending) >= outboxLimit && o.sending {
		o.changed.Wait()
	}
	o.pending = append(o.pending, ev)
	o.mu.Unlock()
}

// pushDirect queues datagram b for d unless the outbox is idle (nothing
// queued, nobody sending), in which case every event queued before has
// been sent and b may go at once: it reports whether it queued b.
func (o *outbox) pushDirect(b []byte, d *udpio.Dest) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.sending && len(o.pending) == 0 {
		return false
	}
	o.pending = append(o.pending, outEvent{classic: b, direct: d})
	return true
}

// pushQueued queues datagram b for d, whatever the outbox is doing.
func (o *outbox) pushQueued(b []byte, d *udpio.Dest) {
	o.mu.Lock()
	o.pending = append(o.pending, outEvent{classic: b, direct: d})
	o.mu.Unlock()
}

// waitIdle returns once nothing is queued and nobody is sending.
func (o *outbox) waitIdle() {
	o.mu.Lock()
	for o.sending || len(o.pending) > 0 {
		if !o.sending {
			o.mu.Unlock()
			return // queued but nobody sends: the caller's flush will
		}
		o.changed.Wait()
	}
	o.mu.Unlock()
}

// Flush sends the queued events of every shard that no other goroutine is
// sending already (that one sends them too), starting with a different
// shard each time, so that two goroutines flushing at once take one shard
// each. It returns once every shard was empty or had a sender.
func (f *fanout) Flush() {
	start := int(f.next.Add(1))
	for i := range f.shards {
		f.flushShard(f.shards[(start+i)%len(f.shards)])
	}
}

// flushShard sends o's queued events unless another goroutine already is.
func (f *fanout) flushShard(o *outbox) {
	o.mu.Lock()
	if o.sending {
		o.mu.Unlock()
		return
	}
	o.sending = true
	held := true
	defer func() {
		// Also on a panic in sendEvents (recovered by the handler): the
		// next broadcast must find the job free, or the room goes silent.
		if !held {
			o.mu.Lock()
		}
		o.sending = false
		o.changed.Broadcast()
		o.mu.Unlock()
	}()
	for len(o.pending) > 0 {
		o.taken, o.pending = o.pending, o.taken[:0]
		o.changed.Broadcast()
		o.mu.Unlock()
		held = false
		f.sendEvents(o, o.taken)
		clear(o.taken)
		o.mu.Lock()
		held = true
	}
}

// sendEvents sends evs, in order. Consecutive events for the same snapshot
// of members share the destination lists and, for v2, datagrams; every
// datagram of the call, whatever its group, goes through one Batch, so a
// flush of many small rooms' events fills each sendmmsg (up to 64) instead
// of making one per room.
func (f *fanout) sendEvents(o *outbox, evs []outEvent) {
	if o.batch == nil {
		o.batch = f.conn.NewBatch()
	}
	datagrams, frames := 0, 0
	for len(evs) > 0 {
		if evs[0].direct != nil {
			o.batch.Add(evs[0].classic, evs[0].direct, 0)
			datagrams++
			evs = evs[1:]
			continue
		}
		n := 1
		for n < len(evs) && evs[n].direct == nil && sameSnapshot(evs[n].members, evs[0].members) {
			n++
		}
		d, fr := f.sendGroup(o, evs[:n])
		datagrams, frames = datagrams+d, frames+fr
		evs = evs[n:]
		if len(o.arena) > maxArena { // bound what one flush keeps
			f.flushBatch(o, &datagrams, &frames)
		}
	}
	f.flushBatch(o, &datagrams, &frames)
}

// maxArena bounds the packed v2 bytes one sendEvents keeps before it sends
// what it has gathered.
const maxArena = 256 << 10

// flushBatch sends o's batch and counts what it carried: datagrams and
// frames (events, one per member per event) handed to the kernel, less
// those it refused.
func (f *fanout) flushBatch(o *outbox, datagrams, frames *int) {
	o.batch.Flush()
	failed, lost := o.batch.Failed, o.batch.Lost
	o.batch.Reset()
	o.arena = o.arena[:0]
	for i := 0; i < failed; i++ {
		f.obs.SendError()
	}
	if *datagrams > 0 {
		f.obs.Delivered(*datagrams - failed)
	}
	if *frames > 0 {
		f.obs.EventsDelivered(*frames - lost)
	}
	*datagrams, *frames = 0, 0
}

func sameSnapshot(a, b []*Member) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// sendGroup queues in o's batch the events that all go to evs[0].members,
// for those of them in o's shard. It returns the datagrams and the frames
// (events times recipients) it queued.
func (f *fanout) sendGroup(o *outbox, evs []outEvent) (datagrams, frames int) {
	o.classic, o.v2, o.v2c, o.v2r, o.own = o.classic[:0], o.v2[:0], o.v2c[:0], o.v2r[:0], o.own[:0]
	senders := o.rowSenders(evs)
	for _, m := range evs[0].members {
		if o.of > 1 && f.shardOf(m.Addr()) != o {
			continue
		}
		switch rev := m.rev.Load(); {
		case m.Proto != ProtoV2:
			o.classic = append(o.classic, m.Dest())
		case rev >= 3:
			if slices.Contains(senders, m) {
				o.own = append(o.own, m)
			} else {
				o.v2r = append(o.v2r, m.Dest())
			}
		case rev == 2:
			o.v2c = append(o.v2c, m.Dest())
		default:
			o.v2 = append(o.v2, m.Dest())
		}
	}
	for i := range evs {
		if len(o.classic) == 0 {
			break
		}
		// Every classic member but the except one (a classic chat's
		// sender) gets the event's line.
		var skip *udpio.Dest
		if ex := evs[i].except; ex != nil && ex.Proto == ProtoClassic {
			skip = ex.Dest()
		}
		for _, d := range o.classic {
			if d == skip {
				continue
			}
			o.batch.Add(evs[i].classic, d, 1)
			datagrams++
			frames++
		}
	}
	for _, pk := range []struct {
		dests []*udpio.Dest
		rev   uint32
	}{{o.v2, 1}, {o.v2c, 2}, {o.v2r, 3}} {
		d, fr := f.packV2(o, evs, pk.dests, pk.rev)
		datagrams, frames = datagrams+d, frames+fr
	}
	// A sender of revision 3 gets its own packing: its chats' rows keep
	// their ids (its acknowledgement), everyone else's leave them out.
	for _, m := range o.own {
		o.one[0] = m.Dest()
		d, fr := f.pack(o, evs, o.one[:], f.budgetFor(o.one[0]), 3, m)
		datagrams, frames = datagrams+d, frames+fr
	}
	o.one[0] = nil
	clear(o.own)
	clear(o.senders) // hold no member past the group
	return datagrams, frames
}

// rowSenders returns the senders of the chats of evs that a row carries
// with an id (only v2 chats have one); those of revision 3 get a packing
// of their own (sendGroup). The slice is o's, valid until the next call.
func (o *outbox) rowSenders(evs []outEvent) []*Member {
	o.senders = o.senders[:0]
	for i := range evs {
		if m := evs[i].except; m != nil && evs[i].cut.HasID() && !slices.Contains(o.senders, m) {
			o.senders = append(o.senders, m)
		}
	}
	return o.senders
}

// packV2 queues in o's batch evs packed for the v2 members dests of
// revision rev (1: full form, 2: compact, 3: rows without ids): one packing
// for the remote members, one for those on loopback (larger datagrams:
// LoopbackSendBudget), each shared by all of them. It returns the datagrams
// and the frames (events times recipients) it queued. dests is reordered.
func (f *fanout) packV2(o *outbox, evs []outEvent, dests []*udpio.Dest, rev uint32) (datagrams, frames int) {
	if len(dests) == 0 {
		return 0, 0
	}
	remote, local := dests[:0], o.v2lo[:0]
	for _, d := range dests {
		if d.Addr.Addr().IsLoopback() {
			local = append(local, d)
		} else {
			remote = append(remote, d)
		}
	}
	o.v2lo = local
	d, fr := f.pack(o, evs, remote, f.budget, rev, nil)
	dl, frl := f.pack(o, evs, local, f.loopBudget, rev, nil)
	clear(o.v2lo)
	return d + dl, fr + frl
}

// pack queues in o's batch evs packed once for dests, in datagrams of at
// most budget bytes, in the form of revision rev; at revision 3, only the
// chats of own (nil: none) keep their ids.
func (f *fanout) pack(o *outbox, evs []outEvent, dests []*udpio.Dest, budget int, rev uint32, own *Member) (datagrams, frames int) {
	if len(dests) == 0 {
		return 0, 0
	}
	p := wire.Packer{Budget: budget, Compact: rev >= 2, Rows: rev >= 3}
	p.Reset(o.arena)
	send := func(d []byte, events int) {
		if d == nil {
			return
		}
		for _, to := range dests {
			o.batch.Add(d, to, events)
		}
		datagrams += len(dests)
		frames += events * len(dests)
	}
	for i := range evs {
		cut := evs[i].cut
		if p.Rows && (own == nil || evs[i].except != own) {
			cut = cut.WithoutID()
		}
		send(p.Add(evs[i].v2, cut)) // a receiver refuses a datagram of more than 64 lines whole
	}
	send(p.Flush())
	o.arena = p.Buf() // the datagrams are never written again: later ones are appended after them
	return datagrams, frames
}

// budgetFor is the largest v2 datagram the relay packs for d.
func (f *fanout) budgetFor(d *udpio.Dest) int {
	if d.Addr.Addr().IsLoopback() {
		return f.loopBudget
	}
	return f.budget
}

// Send sends b, one datagram, to m, after the room events already queued
// for m: a reply never overtakes the fan-out of what its sender sent
// before it (a throttled notice, an ack, a pong after the echo of an
// earlier chat). With m's outbox idle it sends at once; else it queues b
// behind the events and flushes. b MUST NOT change afterwards.
func (f *fanout) Send(m *Member, b []byte) { f.sendTo(b, m.Dest()) }

// Queue queues b, one datagram, for m behind what is queued for it; the
// next Flush sends it. It never sends, so it may be called under a room's
// feed lock.
func (f *fanout) Queue(m *Member, b []byte) {
	d := m.Dest()
	f.shardOf(d.Addr).pushQueued(b, d)
}

// Reply sends b to an address that holds no session (a refusal, a cookie
// retry, a repeated EXIT), as Send does.
func (f *fanout) Reply(to netip.AddrPort, local netip.Addr, b []byte) {
	d := f.conn.Dest(to, local)
	f.sendTo(b, &d)
}

// SendFrames sends encoded frame lines to the v2 member m, packed into as
// few datagrams as its send budget allows (compact for a member of
// revision 2; rows, with their ids, for revision 3), as Send does.
func (f *fanout) SendFrames(m *Member, lines [][]byte) {
	if len(lines) == 0 {
		return
	}
	budget := f.budgetFor(m.Dest())
	rev := m.rev.Load()
	p := wire.Packer{Budget: budget, Compact: rev >= 2, Rows: rev >= 3}
	p.Reset(make([]byte, 0, budget))
	for _, l := range lines {
		var cut wire.EventCut
		if p.Compact {
			cut = wire.CutEvent(l)
		}
		if d, _ := p.Add(l, cut); d != nil {
			f.Send(m, d) // a receiver refuses a datagram of more than 64 lines whole
		}
	}
	if d, _ := p.Flush(); d != nil {
		f.Send(m, d)
	}
}

// sendTo is Send to a prepared destination.
func (f *fanout) sendTo(b []byte, d *udpio.Dest) {
	if o := f.shardOf(d.Addr); o.pushDirect(b, d) {
		f.flushShard(o)
		return
	}
	f.sendNow(b, d)
}

// sendNow sends b to d at once, counting failures.
func (f *fanout) sendNow(b []byte, d *udpio.Dest) {
	if err := f.conn.Send(b, d); err != nil {
		f.obs.SendError()
		f.log.Debug("send failed", zap.Stringer("to", d.Addr), zap.Error(err))
		return
	}
	f.obs.Delivered(1)
}
