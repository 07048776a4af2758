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
// broadcast sequences an event and publishes it to the journal, one queue
// for the node. A worker flushes after each batch of datagrams it took
// from a sender's lane (the dispatcher's afterBatch), the admin requests
// and the sweeper after their own broadcast. A flush does two things, each
// by whoever finds it not under way already (flat combining, as
// nats-server flushes the clients a read loop touched once per read):
//
//   - pack: one goroutine at a time takes the journal and turns it into
//     jobs. A job holds every datagram its events make, built once for the
//     whole node, and for each shard of the members which datagrams go to
//     which of its members. v2 members receive the events packed into
//     datagrams of at most SendBudget bytes (LoopbackSendBudget for
//     members on loopback): CR2 and one frame line after another, the same
//     bytes for every v2 member of a revision; revision 2 gets them
//     compact (a context line states the events' room, epoch and first seq
//     once), revision 3 gets chats as rows without their ids, but a member
//     that sent a chat of the group, whose copy keeps its ids (its
//     acknowledgement), and revision 4 the same in datagrams of up to
//     wire.MaxLinesWide lines: one packing per revision present and per such
//     sender, never one per member or per shard. Classic members receive
//     one line per datagram, as classic clients expect, each line encoded
//     once for all of them.
//   - send: each shard's jobs are sent, in order, by whichever goroutine
//     finds the shard without a sender, to that shard's members only, so
//     that as many goroutines can be in sendmmsg at once as there are
//     shards. The shards share at most 8 sender sockets; a quiet relay's
//     reader sends the jobs of all the idle shards together (FlushQuiet),
//     in one system call.
//
// Nothing ever waits for more: at low load a lane's batch is one datagram
// and its event leaves at once, from the goroutine that made it, with no
// hand-off; under load, the events published during a round leave
// together. Every datagram goes out through a udpio.Batch (sendmmsg on
// Linux, many destinations per system call, never waiting). A datagram
// the kernel refuses is counted as a send error; a v2 member repairs what
// it carried.

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
// join. queue queues m's answer (Delivery.Queue, QueueFrames) under r's
// feed lock, just before m joins: no event of r can come between, so m
// gets its answer before any event of r, and is in r once it has it.
func (s *Server) enter(r *room, m *Member, queue func()) ([]*Member, bool) {
	r.feed.mu.Lock()
	queue()
	others, ok := r.join(m)
	r.feed.mu.Unlock()
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
	defer s.recoverFanout()
	s.out.Flush()
}

// flushQuiet is flushBatch for a batch the reader handled itself: one
// sendmmsg per sender socket (FlushQuiet).
func (s *Server) flushQuiet() {
	defer s.recoverFanout()
	s.fan.FlushQuiet()
}

// recoverFanout, deferred, recovers and counts a panic while sending.
func (s *Server) recoverFanout() {
	if v := recover(); v != nil {
		s.obs.Panic()
		s.log.Error("fan-out panic recovered", zap.Any("panic", v), zap.StackSkip("stack", 1))
	}
}

// outEvent is one published broadcast, or one datagram for one address
// (direct != nil): a reply queued behind the broadcasts before it.
type outEvent struct {
	members []*Member   // the snapshot it goes to
	v2      []byte      // the frame as one JSON line, shared with the ring
	classic []byte      // the classic line; a direct datagram's bytes
	except  *Member     // gets no classic line (the sender of a classic chat)
	direct  *udpio.Dest // where a direct datagram goes

	// cut is where v2 holds its room, seq and epoch: its compact line for
	// members of revision 2 and 3, found by cutOf the first time a packing
	// needs it (a room of classic members never does).
	cut    wire.EventCut
	hasCut bool
}

// cutOf returns e's cut, finding it the first time. Only the goroutine
// packing e calls it.
func (e *outEvent) cutOf() wire.EventCut {
	if !e.hasCut {
		e.cut, e.hasCut = wire.CutEvent(e.v2), true
	}
	return e.cut
}

// journalLimit bounds the events published while a goroutine is packing:
// a producer that finds this many waits for the packer to take them
// (backpressure reaches the reader, which handles where handlers never
// wait: the backlog then waits in the socket; elsewhere the dispatcher's
// bounded queue, where excess is dropped and counted). With nobody
// packing, what waits for the next flush is bounded by the batches being
// handled (a read batch, or workers × sender queue).
const journalLimit = 4096

// jobsInFlight bounds the jobs posted and not yet sent by every shard they
// go to, while one of them packed frames for v2 members. While that many
// are in flight, what is published waits in the journal, and the sender
// that finishes the last of a job packs it all into the next: under load
// the events of a whole round leave together, in as few datagrams as the
// budget allows, as they did when each shard packed its own backlog; at
// low load nothing is in flight and an event is packed and sent at once.
const jobsInFlight = 1

// linesInFlight is jobsInFlight while the jobs in flight packed nothing
// (their rooms' members were classic: one line per event and member).
// Waiting would coalesce nothing for them, only hold the next round behind
// the slowest shard's part of this one: in room100 at 6,500 chats/s, the
// median delivery took 4 ms with one such job in flight and 2.7 ms with
// four, for the same CPU; in room10 at 42,222 chats/s, 26-58 ms with
// sixteen (and flushEvery 16) against 84-187 ms with four, and less CPU
// per delivery (docs/BENCHMARKS.md). Each shard still sends its jobs in
// order, so a member's datagrams keep theirs.
const linesInFlight = 16

// maxArena bounds the packed v2 bytes of one job: the packer posts a job
// once it holds this much and goes on with a new one.
const maxArena = 256 << 10

// fanout is the node's Delivery: the only code that sends to members. Its
// journal holds what was published and not yet packed; its outboxes, one
// per shard of the members (a member's shard is fixed by its address, so
// its datagrams stay in order), the jobs waiting to be sent.
type fanout struct {
	shards []*outbox
	next   atomic.Uint32 // rotates the shard a flush starts with

	obs                Observer
	log                *zap.Logger
	budget, loopBudget int         // SendBudget, LoopbackSendBudget
	conn               *udpio.Conn // set by Serve before the first datagram is read

	// The shards share sender sockets, all sending from the relay's
	// address: shard s sends on slot slotOf(s). A quiet flush sends the
	// idle shards together on slot 0, in one system call (FlushQuiet).
	sockets int
	quiet   quietSlot

	mu       sync.Mutex // protects journal, packing, inflight and packedIn; taken under feed.mu, before an outbox's mu
	journal  []outEvent // published, in order, not yet packed
	packing  bool       // a goroutine is in pack's loop
	inflight int        // jobs posted and not yet released by every shard
	packedIn int        // those of them that packed frames for v2 members
	changed  sync.Cond  // on mu: the journal was taken, packing ended, or a job was released

	// Owned by the goroutine that set packing.
	taken   []outEvent
	senders []*Member     // rowSenders' result
	tos     []*udpio.Dest // a group's members' destinations, but f.own's
	keys    []int32       // their shard and kind (shard*kinds+kind), by f.tos's index
	counts  []int32       // members of a group by shard*kinds+kind
	offs    []int32       // where each shard*kinds+kind starts in the job's dests
	own     []*Member     // the members of revision 3 or 4 who sent a chat of the group
	postTo  []int         // post's list of shards

	freeMu sync.Mutex // protects free
	free   []*job     // jobs every shard has sent, for reuse
}

// A member's kind says which datagrams of a group it gets.
const (
	kindClassic   = iota // one line per event
	kindFull             // v2 revisions 0 and 1: full frame lines
	kindFullLo           // the same, on loopback (LoopbackSendBudget)
	kindCompact          // revision 2
	kindCompactLo        //
	kindRows             // revision 3, rows without ids
	kindRowsLo           //
	kindWide             // revision 4: rows, up to wire.MaxLinesWide lines
	kindWideLo           //
	kinds
)

// kindPacking is the form (revision) and budget of each v2 kind's packing.
var kindPacking = [kinds]struct {
	rev      uint32
	loopback bool // LoopbackSendBudget, else SendBudget
}{
	kindFull: {1, false}, kindFullLo: {1, true},
	kindCompact: {2, false}, kindCompactLo: {2, true},
	kindRows: {3, false}, kindRowsLo: {3, true},
	kindWide: {4, false}, kindWideLo: {4, true},
}

func newFanout(shards int, obs Observer, log *zap.Logger, budget, loopBudget int) *fanout {
	f := &fanout{shards: make([]*outbox, max(shards, 1)), obs: obs, log: log, budget: budget, loopBudget: loopBudget}
	for i := range f.shards {
		f.shards[i] = newOutbox(i)
	}
	f.sockets = min(len(f.shards), SenderSockets)
	f.changed.L = &f.mu
	f.counts = make([]int32, len(f.shards)*kinds)
	f.offs = make([]int32, len(f.shards)*kinds)
	return f
}

// shardOf is the index of the shard that sends to addr.
func (f *fanout) shardOf(addr netip.AddrPort) int {
	if len(f.shards) == 1 {
		return 0
	}
	a := addr.Addr().As16()
	h := uint32(addr.Port()) ^ uint32(a[15])<<8 ^ uint32(a[14])<<16
	return int(h % uint32(len(f.shards)))
}

// Publish queues e in the journal. Callers publish a room's events in
// sequence order (room.feed sees to it), and the journal keeps that order.
func (f *fanout) Publish(e Event) {
	ev := outEvent{members: e.Members, v2: e.V2, classic: e.Classic, except: e.Except}
	f.mu.Lock()
	for len(f.journal) >= journalLimit && (f.packing || !f.mayPostLocked()) {
		f.changed.Wait()
	}
	f.journal = append(f.journal, ev)
	f.mu.Unlock()
}

// Queue queues b, one datagram, for m behind what is queued for it; the
// next Flush sends it. It never sends and never waits, so it may be called
// under a room's feed lock.
func (f *fanout) Queue(m *Member, b []byte) {
	f.mu.Lock()
	f.journal = append(f.journal, outEvent{classic: b, direct: m.Dest()})
	f.mu.Unlock()
}

// queueDirect queues datagram b for d unless nothing is queued for d's
// shard (the journal is empty, nobody packs, the shard has no job and no
// sender), in which case every datagram queued for d before has been sent
// and b may go at once: it reports whether it queued b.
func (f *fanout) queueDirect(b []byte, d *udpio.Dest) bool {
	o := f.shards[f.shardOf(d.Addr)]
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.packing && len(f.journal) == 0 && o.idle() {
		return false
	}
	f.journal = append(f.journal, outEvent{classic: b, direct: d})
	return true
}

// waitIdle returns once nothing is queued, packed or being sent.
func (f *fanout) waitIdle() {
	f.mu.Lock()
	for f.packing || f.inflight > 0 || len(f.journal) > 0 {
		if !f.packing {
			// Pack what nobody else will and send what has no sender
			// (after a panic, say); then every job in flight has one.
			f.mu.Unlock()
			f.Flush()
			f.mu.Lock()
			if !f.packing && f.inflight == 0 {
				continue
			}
		}
		f.changed.Wait()
	}
	f.mu.Unlock()
	for _, o := range f.shards {
		o.waitIdle()
	}
}

// Flush packs the journal unless another goroutine is packing (that one
// packs what is there now too) or enough jobs are in flight (the sender
// that releases one will), then sends the jobs of every shard that no
// other goroutine is sending already (that one sends them too), starting
// with a different shard each time, so that two goroutines flushing at
// once take one shard each. It returns once every shard was empty or had
// a sender.
func (f *fanout) Flush() {
	for {
		f.pack()
		start := int(f.next.Add(1))
		for i := range f.shards {
			f.flushShard(f.shards[(start+i)%len(f.shards)])
		}
		// A sender may have packed meanwhile, for a shard visited before.
		if !f.unsent() {
			return
		}
	}
}

// unsent reports whether a shard has jobs and no sender.
func (f *fanout) unsent() bool {
	for _, o := range f.shards {
		if o.orphaned() {
			return true
		}
	}
	return false
}

// pack turns the journal into jobs and posts them, until the journal is
// empty or enough are in flight (mayPostLocked), unless another goroutine
// is packing already. Every job it made is posted before it lets go of
// packing, so a goroutine that finds nobody packing finds their jobs in
// the outboxes.
func (f *fanout) pack() {
	takeTurn(&f.mu, &f.changed, &f.packing,
		func() bool { return len(f.journal) > 0 && f.mayPostLocked() },
		func() { f.taken, f.journal = f.journal, f.taken[:0] },
		func() {
			f.packEvents(f.taken)
			clear(f.taken)
		})
}

// packIfFull packs the journal here if it holds journalLimit events and
// nobody is packing: a reader that handles its batches publishes and reads
// on while the tasks it kicked have not started, and the journal stays
// bounded all the same (while a goroutine packs, or no more jobs may be
// posted, publishing waits instead).
func (f *fanout) packIfFull() {
	f.mu.Lock()
	full := len(f.journal) >= journalLimit && !f.packing
	f.mu.Unlock()
	if full {
		f.pack()
	}
}

// mayPostLocked reports whether another job may be posted now: fewer than
// jobsInFlight are in flight, or linesInFlight if none of them packed.
// f.mu must be held.
func (f *fanout) mayPostLocked() bool {
	if f.packedIn > 0 {
		return f.inflight < jobsInFlight
	}
	return f.inflight < linesInFlight
}

// takeTurn is flat combining's turn at a queue that others fill: unless
// busy is set already (that goroutine's turn takes what is queued now
// too), it sets busy and, while more reports work, takes it (take, under
// mu; changed is broadcast) and does it (do, without mu); then it clears
// busy and broadcasts changed, also when do panics (recovered by the
// handler), or the queue would never be served again. mu is not held on
// entry or return.
func takeTurn(mu *sync.Mutex, changed *sync.Cond, busy *bool, more func() bool, take, do func()) {
	mu.Lock()
	if *busy || !more() {
		mu.Unlock()
		return
	}
	*busy = true
	held := true
	defer func() {
		if !held {
			mu.Lock()
		}
		*busy = false
		changed.Broadcast()
		mu.Unlock()
	}()
	for more() {
		take()
		changed.Broadcast()
		mu.Unlock()
		held = false
		do()
		mu.Lock()
		held = true
	}
}

// packEvents packs evs, in order, into jobs and posts them. Consecutive
// events for the same snapshot of members form a group, whose datagrams
// are built once.
func (f *fanout) packEvents(evs []outEvent) {
	j := f.newJob()
	for len(evs) > 0 {
		if d := evs[0].direct; d != nil {
			to := int32(len(j.dests))
			j.dests = append(j.dests, d)
			j.dgs = append(j.dgs, dgram{b: evs[0].classic})
			j.addSend(f.shardOf(d.Addr), len(j.dgs)-1, to, to+1)
			evs = evs[1:]
			continue
		}
		n := 1
		for n < len(evs) && evs[n].direct == nil && sameSnapshot(evs[n].members, evs[0].members) {
			n++
		}
		f.packGroup(j, evs[:n])
		evs = evs[n:]
		if len(j.arena) > maxArena {
			f.post(j)
			j = f.newJob()
		}
	}
	f.post(j)
}

func sameSnapshot(a, b []*Member) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// packGroup adds to j the datagrams of evs, which all go to
// evs[0].members, and for each shard who of its members gets which.
func (f *fanout) packGroup(j *job, evs []outEvent) {
	members := evs[0].members
	var senders []*Member // rowSenders', once a member of revision 3 needs them
	hasSenders := false
	// Each member's shard and kind, counted, then the members' destinations
	// laid out in j.dests shard by shard, kind by kind.
	clear(f.counts)
	f.tos, f.keys = f.tos[:0], f.keys[:0]
	for _, m := range members {
		d := m.Dest()
		kind := kindClassic
		switch rev := m.rev.Load(); {
		case m.Proto != ProtoV2:
		case rev >= 3:
			if !hasSenders {
				senders, hasSenders = f.rowSenders(evs), true
			}
			if slices.Contains(senders, m) {
				f.own = append(f.own, m) // a packing of its own, below
				continue
			}
			kind = kindRows
			if rev >= 4 {
				kind = kindWide
			}
		case rev == 2:
			kind = kindCompact
		default:
			kind = kindFull
		}
		if kind != kindClassic && d.Addr.Addr().IsLoopback() {
			kind++
		}
		key := int32(f.shardOf(d.Addr)*kinds + kind)
		f.tos, f.keys = append(f.tos, d), append(f.keys, key)
		f.counts[key]++
	}
	at := int32(len(j.dests))
	for key, c := range f.counts {
		f.offs[key] = at
		at += c
	}
	j.dests = slices.Grow(j.dests, int(at)-len(j.dests))[:at]
	for i, key := range f.keys {
		j.dests[f.offs[key]] = f.tos[i]
		f.offs[key]++ // now where key's destinations end
	}
	// The datagrams of each kind present, and where each shard sends them.
	for kind := kindClassic; kind < kinds; kind++ {
		total := int32(0)
		for s := range f.shards {
			total += f.counts[s*kinds+kind]
		}
		if total == 0 {
			continue
		}
		dg0 := len(j.dgs)
		if kind == kindClassic {
			for i := range evs {
				// Every classic member but the except one (a classic
				// chat's sender) gets the event's line.
				var skip *udpio.Dest
				if ex := evs[i].except; ex != nil && ex.Proto == ProtoClassic {
					skip = ex.Dest()
				}
				j.dgs = append(j.dgs, dgram{b: evs[i].classic, events: 1, skip: skip})
			}
		} else {
			pk, budget := kindPacking[kind], f.budget
			if pk.loopback {
				budget = f.loopBudget
			}
			f.packInto(j, evs, budget, pk.rev, nil)
		}
		for s := range f.shards {
			key := s*kinds + kind
			if c := f.counts[key]; c > 0 {
				j.addSend(s, dg0, f.offs[key]-c, f.offs[key])
			}
		}
	}
	// A sender of revision 3 or 4 gets its own packing: its chats' rows keep
	// their ids (its acknowledgement), everyone else's leave them out.
	for _, m := range f.own {
		d := m.Dest()
		dg0 := len(j.dgs)
		f.packInto(j, evs, f.budgetFor(d), m.rev.Load(), m)
		to := int32(len(j.dests))
		j.dests = append(j.dests, d)
		j.addSend(f.shardOf(d.Addr), dg0, to, to+1)
	}
	clear(f.own)
	f.own = f.own[:0]
	clear(f.tos)
	clear(f.senders) // hold no member past the group
}

// rowSenders returns the senders of the chats of evs that a row carries
// with an id (only v2 chats have one); those of revision 3 or 4 get a packing
// of their own (packGroup). The slice is f's, valid until the next call.
func (f *fanout) rowSenders(evs []outEvent) []*Member {
	f.senders = f.senders[:0]
	for i := range evs {
		if m := evs[i].except; m != nil && evs[i].cutOf().HasID() && !slices.Contains(f.senders, m) {
			f.senders = append(f.senders, m)
		}
	}
	return f.senders
}

// packInto adds to j evs packed once, in datagrams of at most budget
// bytes, in the form of revision rev; from revision 3, only the chats of own
// (nil: none) keep their ids.
func (f *fanout) packInto(j *job, evs []outEvent, budget int, rev uint32, own *Member) {
	j.packed = true
	p := wire.PackerFor(uint64(rev), budget)
	p.Reset(j.arena)
	for i := range evs {
		cut := evs[i].cutOf()
		if p.Rows && (own == nil || evs[i].except != own) {
			cut = cut.WithoutID()
		}
		// A receiver refuses a datagram of more lines than its revision's
		// MaxLines whole: the Packer keeps to them.
		if d, n := p.Add(evs[i].v2, cut); d != nil {
			j.dgs = append(j.dgs, dgram{b: d, events: n})
		}
	}
	if d, n := p.Flush(); d != nil {
		j.dgs = append(j.dgs, dgram{b: d, events: n})
	}
	j.arena = p.Buf() // the datagrams are never written again: later ones are appended after them
}

// budgetFor is the largest v2 datagram the relay packs for d.
func (f *fanout) budgetFor(d *udpio.Dest) int {
	if d.Addr.Addr().IsLoopback() {
		return f.loopBudget
	}
	return f.budget
}

// job is what one packing round made: its datagrams, built once, and for
// each shard which of them go to whom, in order. The shards' senders share
// it read-only; the last to have sent its part frees it.
type job struct {
	refs   atomic.Int32  // shards that have yet to send their part
	packed bool          // it holds frames packed for v2 members (set before it is posted)
	arena  []byte        // the packed v2 datagrams
	dgs    []dgram       // every datagram, packed or not
	dests  []*udpio.Dest // the destinations, shard by shard and kind by kind within a group
	sends  [][]sendRef   // by shard: what it sends, in order
}

// dgram is one datagram of a job.
type dgram struct {
	b      []byte
	events int         // the frames it carries (a classic line: 1; a direct datagram: 0)
	skip   *udpio.Dest // gets no copy (the sender of a classic chat), or nil
}

// sendRef says that the datagrams dgs[dg0:dg1] go, in order, to each of
// dests[to0:to1].
type sendRef struct{ dg0, dg1, to0, to1 int32 }

// addSend adds to shard s's part the datagrams j.dgs[dg0:] for the
// destinations j.dests[to0:to1].
func (j *job) addSend(s, dg0 int, to0, to1 int32) {
	if dg0 == len(j.dgs) {
		return
	}
	j.sends[s] = append(j.sends[s], sendRef{dg0: int32(dg0), dg1: int32(len(j.dgs)), to0: to0, to1: to1})
}

// newJob returns an empty job with a part for every shard.
func (f *fanout) newJob() *job {
	f.freeMu.Lock()
	var j *job
	if n := len(f.free); n > 0 {
		j, f.free[n-1] = f.free[n-1], nil
		f.free = f.free[:n-1]
	}
	f.freeMu.Unlock()
	if j == nil {
		j = &job{sends: make([][]sendRef, len(f.shards))}
	}
	return j
}

// post hands j to the shards it sends to, or frees it if it sends nothing.
// The shards are listed before the first is handed j: from then on j is
// the shards' (the last to send frees it).
func (f *fanout) post(j *job) {
	f.postTo = f.postTo[:0]
	for s, p := range j.sends {
		if len(p) > 0 {
			f.postTo = append(f.postTo, s)
		}
	}
	if len(f.postTo) == 0 {
		f.recycle(j)
		return
	}
	j.refs.Store(int32(len(f.postTo)))
	f.mu.Lock()
	f.inflight++
	if j.packed {
		f.packedIn++
	}
	f.mu.Unlock()
	for _, s := range f.postTo {
		f.shards[s].push(j)
	}
}

// release drops one of j's references; the last ends its flight and frees
// it for reuse. Its caller MUST pack afterwards (flushShard does): what
// waited for the flight to end may be nobody else's to pack.
func (f *fanout) release(j *job) {
	if j.refs.Add(-1) > 0 {
		return
	}
	f.mu.Lock()
	f.inflight--
	if j.packed {
		f.packedIn--
	}
	f.changed.Broadcast()
	f.mu.Unlock()
	f.recycle(j)
}

// recycle empties j and keeps it for reuse.
func (f *fanout) recycle(j *job) {
	clear(j.dgs) // hold no datagram or destination past the job
	clear(j.dests)
	j.arena, j.dgs, j.dests = j.arena[:0], j.dgs[:0], j.dests[:0]
	j.packed = false
	for s := range j.sends {
		j.sends[s] = j.sends[s][:0]
	}
	f.freeMu.Lock()
	if len(f.free) < len(f.shards)+2 {
		f.free = append(f.free, j)
	}
	f.freeMu.Unlock()
}

// outbox holds the jobs waiting to be sent to one shard of the members,
// in order.
type outbox struct {
	index int // this is shard index

	mu      sync.Mutex // protects pending and sending; taken under fanout.mu
	pending []*job
	sending bool      // a goroutine has the shard's turn (flushShard's loop, or claim until endTurn)
	changed sync.Cond // on mu: pending was taken, or sending ended

	// Owned by the goroutine that set sending.
	taken []*job
	batch *udpio.Batch // the datagrams of one sendTaken, many per system call
}

func newOutbox(index int) *outbox {
	o := &outbox{index: index}
	o.changed.L = &o.mu
	return o
}

// push queues j (at most linesInFlight wait: push never waits).
func (o *outbox) push(j *job) {
	o.mu.Lock()
	o.pending = append(o.pending, j)
	o.mu.Unlock()
}

// orphaned reports whether o has jobs and no sender.
func (o *outbox) orphaned() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.orphanedLocked()
}

func (o *outbox) orphanedLocked() bool { return !o.sending && len(o.pending) > 0 }

// claim takes o's turn and its pending jobs into o.taken if o has jobs and
// no sender, and reports whether it did; the caller sends o.taken and
// then MUST endTurn, also if it panics.
func (o *outbox) claim() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.orphanedLocked() {
		return false
	}
	o.sending = true
	o.taken, o.pending = o.pending, o.taken[:0]
	return true
}

// endTurn ends the turn claim took; whoever waits for o sees it.
func (o *outbox) endTurn() {
	o.mu.Lock()
	o.sending = false
	o.changed.Broadcast()
	o.mu.Unlock()
}

// idle reports whether o has no job and no sender.
func (o *outbox) idle() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.sending && len(o.pending) == 0
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

// flushShard sends o's jobs unless another goroutine already is.
func (f *fanout) flushShard(o *outbox) {
	takeTurn(&o.mu, &o.changed, &o.sending,
		func() bool { return len(o.pending) > 0 },
		func() { o.taken, o.pending = o.pending, o.taken[:0] },
		func() {
			if o.batch == nil {
				o.batch = f.conn.NewBatchOn(f.slotOf(o.index))
			}
			f.sendTaken(o.batch, o)
			f.pack() // the jobs it released may be what held the journal back
		})
}

// sendTaken sends the part of each of shards' taken jobs (o.taken, held by
// the caller, which has each shard's turn) for that shard, in order,
// through b: a flush of many small rooms' events fills each sendmmsg (up
// to 1,024) instead of making one per room, and a quiet flush sends the
// idle shards together (FlushQuiet). A member's datagrams of a
// job leave back to back (member by member, not event by event): the
// kernel enqueues them on the member's socket in a row, cache-warm, and
// its reader wakes once for them; in room10 at the limit that is 10-15%
// more deliveries/s for the same CPU (docs/BENCHMARKS.md). Each member's
// datagrams keep their order. Then it releases the jobs and empties
// o.taken, also if it panics (a bug, recovered by the handler): a job
// never released would hold the journal back for good.
func (f *fanout) sendTaken(b *udpio.Batch, shards ...*outbox) {
	defer func() {
		b.Discard() // a panic's leftovers: nothing may point into a released job
		for _, o := range shards {
			for _, j := range o.taken {
				f.release(j)
			}
			clear(o.taken)
		}
	}()
	datagrams, frames := 0, 0
	for _, o := range shards {
		addParts(b, o.index, o.taken, &datagrams, &frames)
	}
	f.flushBatch(b, &datagrams, &frames)
}

// addParts adds shard s's part of jobs to b, in order, member by member
// within a job, and counts the datagrams and frames it added.
func addParts(b *udpio.Batch, s int, jobs []*job, datagrams, frames *int) {
	for _, j := range jobs {
		for _, r := range j.sends[s] {
			tos := j.dests[r.to0:r.to1]
			dgs := j.dgs[r.dg0:r.dg1]
			for _, to := range tos {
				for i := range dgs {
					dg := &dgs[i]
					if to == dg.skip {
						continue
					}
					b.Add(dg.b, to, dg.events)
					*datagrams++
					*frames += dg.events
				}
			}
		}
	}
}

// flushBatch sends batch b and counts what it carried: datagrams and
// frames (events, one per member per event) handed to the kernel, less
// those it refused.
func (f *fanout) flushBatch(b *udpio.Batch, datagrams, frames *int) {
	b.Flush()
	failed, lost := b.Failed, b.Lost
	b.Reset()
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

// SenderSockets is how many sender sockets the fan-out's shards share at
// most, so at most how many of its sendmmsg calls run at once. 32 shards
// on 8 sockets send as fast as on 32 (room10 at and beyond its limit); on
// 2, 2-8% slower at room10's limit (docs/BENCHMARKS.md).
const SenderSockets = 8

// slotOf is the sender socket (udpio.Conn.NewBatchOn's slot) of shard s.
func (f *fanout) slotOf(s int) int { return s % f.sockets }

// quietSlot is what FlushQuiet needs to send the idle shards together.
type quietSlot struct {
	mu    sync.Mutex // held (TryLock) by the goroutine sending the shards together
	batch *udpio.Batch
	taken []*outbox // the shards it took
}

// FlushQuiet is Flush for a relay with nothing else under way: the reader
// handling a small read batch itself. The shards that have jobs and no
// sender are sent together, in one system call instead of one per shard:
// a chat to a room of 20 leaves in one sendmmsg, not 19 (or 8, one per
// sender socket, before round fourteen: 13 µs of median delivery time at
// the latency step, docs/BENCHMARKS.md). Every sender socket sends from
// the relay's address (a descriptor of its socket, or a socket of its
// reuseport group bound to it), and each shard's turn is this goroutine's
// while it sends, so each member's datagrams still leave one after
// another, in order, as they do when a shard's turn passes from one
// goroutine (and CPU) to another. Then it flushes as Flush does, for
// whatever came meanwhile.
func (f *fanout) FlushQuiet() {
	f.pack()
	f.sendIdle()
	f.Flush()
}

// sendIdle sends together the jobs of the shards that have no sender,
// unless another goroutine is doing so (Flush then sends them shard by
// shard).
func (f *fanout) sendIdle() {
	q := &f.quiet
	if !q.mu.TryLock() {
		return
	}
	defer q.mu.Unlock()
	for _, o := range f.shards {
		if o.claim() {
			q.taken = append(q.taken, o)
		}
	}
	if len(q.taken) == 0 {
		return
	}
	if q.batch == nil {
		q.batch = f.conn.NewBatchOn(0)
	}
	defer func() { // the shards' turns end, also after a panic (as takeTurn's)
		for _, o := range q.taken {
			o.endTurn()
		}
		clear(q.taken)
		q.taken = q.taken[:0]
	}()
	f.sendTaken(q.batch, q.taken...)
}

// Send sends b, one datagram, to m, after the room events already queued
// for m: a reply never overtakes the fan-out of what its sender sent
// before it (a throttled notice, an ack, a pong after the echo of an
// earlier chat). With nothing queued for m's shard it sends at once; else
// it queues b behind the events and flushes. b MUST NOT change afterwards.
func (f *fanout) Send(m *Member, b []byte) { f.sendTo(b, m.Dest()) }

// Reply sends b to an address that holds no session (a refusal, a cookie
// retry, a repeated EXIT), as Send does.
func (f *fanout) Reply(to netip.AddrPort, local netip.Addr, b []byte) {
	d := f.conn.Dest(to, local)
	f.sendTo(b, &d)
}

// SendFrames sends encoded frame lines to the v2 member m, packed into as
// few datagrams as its send budget allows (compact for a member of
// revision 2; rows, with their ids, for revision 3 and 4; as many lines a
// datagram as m's revision reads), as Send does.
func (f *fanout) SendFrames(m *Member, lines [][]byte) { f.packFrames(m, lines, f.Send) }

// QueueFrames is SendFrames as Queue: queued, sent by the next Flush.
func (f *fanout) QueueFrames(m *Member, lines [][]byte) { f.packFrames(m, lines, f.Queue) }

// packFrames packs lines for m as SendFrames says and hands each datagram
// to out.
func (f *fanout) packFrames(m *Member, lines [][]byte, out func(*Member, []byte)) {
	if len(lines) == 0 {
		return
	}
	budget := f.budgetFor(m.Dest())
	rev := m.rev.Load()
	p := wire.PackerFor(uint64(rev), budget)
	p.Reset(make([]byte, 0, budget))
	for _, l := range lines {
		var cut wire.EventCut
		if p.Compact {
			cut = wire.CutEvent(l)
		}
		if d, _ := p.Add(l, cut); d != nil {
			out(m, d) // within m's revision's MaxLines, which m's client enforces
		}
	}
	if d, _ := p.Flush(); d != nil {
		out(m, d)
	}
}

// sendTo is Send to a prepared destination.
func (f *fanout) sendTo(b []byte, d *udpio.Dest) {
	if f.queueDirect(b, d) {
		f.Flush()
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
