package relay

import (
	"context"
	"net/netip"
	"runtime"
	"sync"
	"time"
)

// datagram is one received datagram on its way to a handler. buf is owned
// by whoever holds the datagram: the reader until enqueue succeeds, then the
// dispatcher, then the worker, which returns it to the pool.
type datagram struct {
	buf   *[]byte
	n     int
	from  netip.AddrPort
	local netip.Addr

	repairBudget int // v2: events this datagram's repairs and pings may still resend
}

// lane holds one sender's pending datagrams. At most one worker runs a lane
// at a time, which is what keeps a sender's requests in order although the
// pool runs workers concurrently.
type lane struct {
	from      netip.AddrPort
	items     []datagram // guarded by dispatcher.mu
	spare     []datagram // the previous batch's backing array, reused
	inflight  int        // datagrams of this lane a worker is handling now
	scheduled bool       // in ready or held by a worker; guarded by dispatcher.mu
}

// dispatcher turns a stream of datagrams from many senders into work for a
// bounded executor while keeping each sender's order:
//
//   - each sender has a lane (a FIFO of its datagrams);
//   - a lane with work sits once in the ready queue, or is held by exactly
//     one worker;
//   - a worker takes a lane's whole backlog, handles it in order, puts the
//     lane back at the tail of the ready queue if more arrived meanwhile
//     (round robin, so one busy sender cannot starve the others), and
//     moves on to the next lane; it exits when the ready queue is empty.
//
// One executor task therefore serves many datagrams: the pool hand-off is
// amortized, not paid per datagram. A worker is started only when no
// running worker is free to take the ready lanes (takers is zero: each is
// flushing, which may send for milliseconds), so a read batch from many
// senders wakes one worker, not one per sender: each wake-up and each
// worker going idle again costs the Go scheduler a round of system calls,
// which at high rates costs more than the handlers themselves. Where
// handlers may wait (a room log, session store or cluster behind the
// network: perLane), every ready lane may have a worker of its own, so
// that one sender's wait never holds up another's datagrams. Memory is bounded by maxQueued
// datagrams in all and maxPerSender per lane; beyond either, enqueue drops
// and counts instead of blocking.
type dispatcher struct {
	exec         Executor
	handle       func(*datagram) // handles one datagram and releases its buffer
	release      func(*datagram) // releases a dropped datagram's buffer
	afterBatch   func()          // runs after each lane batch, without mu (the fan-out's flush)
	obs          Observer
	maxQueued    int
	maxPerSender int
	maxWorkers   int
	perLane      bool   // handlers may wait: start a worker per ready lane
	work         func() // d.run, bound once so Invoke does not allocate

	mu      sync.Mutex // protects the fields below and every lane's items, spare, inflight and scheduled
	lanes   map[netip.AddrPort]*lane
	ready   []*lane // ready[head:] is the FIFO of lanes waiting for a worker
	head    int
	free    []*lane // lanes no sender holds, kept for reuse (at most freeLanes)
	queued  int     // datagrams in lanes, not yet handled
	workers int     // running tasks
	takers  int     // running tasks that take lanes (not flushing): they will see new ready lanes
	closed  bool
	abandon bool          // set when the drain deadline passed: drop, don't handle
	idle    chan struct{} // closed when closed && workers == 0
}

func newDispatcher(exec Executor, maxQueued, maxPerSender, maxWorkers int, perLane bool, obs Observer, handle, release func(*datagram), afterBatch func()) *dispatcher {
	if afterBatch == nil {
		afterBatch = func() {}
	}
	d := &dispatcher{
		afterBatch:   afterBatch,
		exec:         exec,
		handle:       handle,
		release:      release,
		obs:          obs,
		maxQueued:    maxQueued,
		maxPerSender: maxPerSender,
		maxWorkers:   maxWorkers,
		perLane:      perLane,
		lanes:        make(map[netip.AddrPort]*lane),
		idle:         make(chan struct{}),
	}
	d.work = d.run
	return d
}

// handoff is what enqueueAll left to its caller.
type handoff int

const (
	handedOff handoff = iota // workers that were running, or that it started, handle the batch
	wokeIdle                 // no worker was running: it started one
)

// enqueueAll takes ownership of every datagram in gs (a read batch), under
// one lock, and starts the workers they need. It never blocks. A refused
// datagram's buffer is released and the drop counted; refused is scratch
// space for them (it may be nil) and is returned for reuse. gs is cleared.
func (d *dispatcher) enqueueAll(gs []datagram, refused []refusal) (_ []refusal, h handoff) {
	refused = refused[:0]
	d.mu.Lock()
	for i := range gs {
		g := &gs[i]
		if d.closed {
			refused = append(refused, refusal{*g, DropShutdown})
			continue
		}
		if d.queued >= d.maxQueued {
			refused = append(refused, refusal{*g, DropQueueFull})
			continue
		}
		l := d.lanes[g.from]
		if l == nil {
			l = d.newLaneLocked(g.from)
			d.lanes[g.from] = l
		} else if len(l.items)+l.inflight >= d.maxPerSender {
			refused = append(refused, refusal{*g, DropSenderQueue})
			continue
		}
		l.items = append(l.items, *g)
		d.queued++
		if !l.scheduled {
			l.scheduled = true
			d.ready = append(d.ready, l)
		}
	}
	starts := d.startsLocked()
	if starts > 0 && d.workers == starts {
		h = wokeIdle
	}
	d.obs.Queued(d.queued) // under mu, so the gauge's updates are in order
	d.mu.Unlock()
	clear(gs)
	for range starts {
		d.startWorker()
	}
	for i := range refused {
		if refused[i].reason == DropQueueFull {
			d.obs.PoolRejected()
		}
		d.drop(&refused[i].g, refused[i].reason)
	}
	clear(refused)
	return refused, h
}

// refusal is a datagram enqueueAll refused, and why.
type refusal struct {
	g      datagram
	reason string
}

// startsLocked counts the workers to start for the ready lanes, and counts
// them as running (and taking lanes): with perLane one per ready lane that
// no taker will take, else one if no worker takes lanes now. d.mu must be
// held.
func (d *dispatcher) startsLocked() int {
	n := 0
	if d.perLane {
		n = d.readyLen() - d.takers
	} else if d.takers == 0 && d.readyLen() > 0 {
		n = 1
	}
	n = max(min(n, d.maxWorkers-d.workers), 0)
	d.workers += n
	d.takers += n
	return n
}

// readyLen is how many lanes wait in the ready queue. d.mu must be held.
func (d *dispatcher) readyLen() int { return len(d.ready) - d.head }

// popReadyLocked takes the lane at the head of the ready queue, which must
// not be empty. The queue's array is reused: emptied, it starts again at
// its front; once its taken head is more than half of it, the waiting
// lanes move to the front. d.mu must be held.
func (d *dispatcher) popReadyLocked() *lane {
	l := d.ready[d.head]
	d.ready[d.head] = nil
	d.head++
	switch {
	case d.head == len(d.ready):
		d.ready, d.head = d.ready[:0], 0
	case d.head > len(d.ready)/2 && d.head >= 64:
		n := copy(d.ready, d.ready[d.head:])
		clear(d.ready[n:])
		d.ready, d.head = d.ready[:n], 0
	}
	return l
}

// freeLanes bounds the lanes kept for reuse, and laneArrayMax the
// datagrams a kept lane's arrays may hold. A lane goes when its sender has
// nothing queued; under load the same senders' lanes go and come back with
// every read batch, and each new one was an allocation of the lane and of
// its arrays as they grew again.
const (
	freeLanes    = 64
	laneArrayMax = 128
)

// newLaneLocked returns an empty lane for from, reused if one is free.
// d.mu must be held.
func (d *dispatcher) newLaneLocked(from netip.AddrPort) *lane {
	n := len(d.free)
	if n == 0 {
		return &lane{from: from}
	}
	l := d.free[n-1]
	d.free[n-1] = nil
	d.free = d.free[:n-1]
	l.from = from
	return l
}

// recycleLocked keeps l, which no sender holds any more and whose arrays
// hold no datagram, for newLaneLocked: with its arrays unless a burst grew
// them beyond laneArrayMax. d.mu must be held.
func (d *dispatcher) recycleLocked(l *lane) {
	if len(d.free) >= freeLanes {
		return
	}
	items, spare := l.items[:0], l.spare[:0]
	if cap(items) > laneArrayMax {
		items = nil
	}
	if cap(spare) > laneArrayMax {
		spare = nil
	}
	*l = lane{items: items, spare: spare}
	d.free = append(d.free, l)
}

// invokeRetries bounds how often startWorker retries a refused Invoke. A
// pool sized to maxWorkers refuses only in the instant between one of our
// tasks returning and the pool taking its goroutine back; a few yields
// cover that without ever blocking for long.
const invokeRetries = 8

// startWorker submits one drain task; d.workers already counts it.
func (d *dispatcher) startWorker() {
	for try := 0; ; try++ {
		err := d.exec.Invoke(d.work)
		if err == nil {
			return
		}
		if try == invokeRetries {
			d.invokeFailed()
			return
		}
		runtime.Gosched()
	}
}

// invokeFailed undoes a worker start the executor refused. If no worker is
// left to drain the ready lanes, their datagrams are dropped and counted,
// so nothing waits forever.
func (d *dispatcher) invokeFailed() {
	d.mu.Lock()
	d.workers--
	d.takers--
	var orphans []datagram
	if d.workers == 0 {
		for _, l := range d.ready[d.head:] {
			orphans = append(orphans, l.items...)
			d.queued -= len(l.items)
			l.items = nil
			l.scheduled = false
			delete(d.lanes, l.from)
		}
		clear(d.ready)
		d.ready, d.head = d.ready[:0], 0
	}
	d.signalIdleLocked()
	d.obs.Queued(d.queued)
	d.mu.Unlock()
	for i := range orphans {
		d.obs.PoolRejected()
		d.drop(&orphans[i], DropQueueFull)
	}
}

// flushEvery is how many datagrams a worker handles, while lanes keep
// waiting, before it flushes the fan-out. Lanes keep waiting from well
// below the relay's limit: at 27,777 room10 chats/s, 64 datagrams were
// 2.3 ms of arrivals that every event of them waited for (p50 2.5-3.7 ms
// against the batch loop's 0.5-0.7); with 16 (and linesInFlight 16) it
// is 1.1-1.3 ms, for no more CPU per delivery (docs/BENCHMARKS.md).
const flushEvery = 16

// run is the executor task: it handles ready lanes until none is left.
func (d *dispatcher) run() {
	unflushed := 0 // datagrams handled since this worker last flushed
	after := d.afterBatch
	d.mu.Lock() // startsLocked counted this worker among the takers
	for d.readyLen() > 0 {
		l := d.popReadyLocked()
		batch := l.items
		l.items = l.spare[:0]
		l.inflight = len(batch)
		abandon := d.abandon
		d.mu.Unlock()

		for i := range batch {
			if abandon {
				d.drop(&batch[i], DropShutdown)
			} else {
				d.handle(&batch[i])
			}
			batch[i] = datagram{}
		}

		d.mu.Lock()
		d.queued -= len(batch)
		l.inflight = 0
		l.spare = batch[:0]
		if len(l.items) > 0 {
			d.ready = append(d.ready, l)
		} else {
			l.scheduled = false
			delete(d.lanes, l.from)
			d.recycleLocked(l)
		}
		d.obs.Queued(d.queued)
		// Flush when no lane waits (at low load: at once, after each
		// datagram), else after flushEvery datagrams: under load the events
		// of many lanes leave together, many per system call.
		unflushed += len(batch)
		flush := d.readyLen() == 0 || unflushed >= flushEvery
		// The flush comes after the lane is given back: under steady load
		// the goroutine that sends may send for long, and the sender whose
		// batch it handled must not wait for that (its pings and repairs
		// would go unanswered). While this worker flushes it takes no
		// lanes: a lane ready meanwhile gets a worker of its own if no
		// other worker takes lanes.
		if flush {
			d.takers--
		}
		starts := d.startsLocked() // none while this worker takes lanes, unless perLane
		d.mu.Unlock()
		for range starts {
			d.startWorker()
		}
		if flush {
			after()
			unflushed = 0
		}
		d.mu.Lock()
		if flush {
			d.takers++
		}
	}
	d.takers--
	if unflushed > 0 { // lanes came and went while this worker handled others
		starts := d.startsLocked() // none while another worker takes lanes
		d.mu.Unlock()
		for range starts {
			d.startWorker()
		}
		after()
		d.mu.Lock()
	}
	if d.readyLen() == 0 && cap(d.ready) > 4*d.maxWorkers+64 {
		d.ready, d.head = nil, 0 // let a burst's backing array go
	}
	d.workers--
	starts := d.startsLocked()
	d.signalIdleLocked()
	d.mu.Unlock()
	for range starts {
		d.startWorker()
	}
}

// signalIdleLocked closes idle once the dispatcher is closed and no worker
// runs. d.mu must be held.
func (d *dispatcher) signalIdleLocked() {
	if d.closed && d.workers == 0 {
		select {
		case <-d.idle:
		default:
			close(d.idle)
		}
	}
}

func (d *dispatcher) drop(g *datagram, reason string) {
	d.obs.DatagramDropped(reason)
	d.release(g)
}

// abandonGrace bounds how long close waits for workers after its context
// ended: handlers never block, so they finish well within it, but an
// executor that accepted a task and never ran it must not hang shutdown.
const abandonGrace = time.Second

// close refuses new datagrams and waits until the queued ones are handled
// or ctx ends; after ctx ends, what is left is dropped (counted) rather than
// handled, and close waits at most abandonGrace more for the workers.
func (d *dispatcher) close(ctx context.Context) error {
	d.mu.Lock()
	d.closed = true
	d.signalIdleLocked()
	d.mu.Unlock()
	select {
	case <-d.idle:
		return nil
	case <-ctx.Done():
	}
	d.mu.Lock()
	d.abandon = true
	d.mu.Unlock()
	select {
	case <-d.idle:
	case <-time.After(abandonGrace):
	}
	return ctx.Err()
}
