package relaytest

import (
	"container/heap"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// LossConfig describes how a LossyProxy mistreats datagrams. Every setting
// applies independently to each direction (client to relay, relay to
// client); each direction draws its decisions from its own generator seeded
// from Seed, so the same seed and the same datagrams in the same order give
// the same decisions.
type LossConfig struct {
	Seed    int64         // seeds the decisions
	Loss    float64       // probability that a datagram is dropped
	Dup     float64       // probability that a forwarded datagram is sent twice
	Reorder float64       // probability that a datagram is held back behind the next one of its flow
	Delay   time.Duration // added to every datagram
	Jitter  time.Duration // plus a uniform random delay in [0, Jitter)
}

// DirStats counts what one direction of a LossyProxy did.
type DirStats struct {
	Received   uint64 // datagrams that arrived
	Dropped    uint64 // dropped on purpose (Loss)
	Duplicated uint64 // sent twice (Dup)
	Reordered  uint64 // held back behind a later datagram (Reorder)
	Overflow   uint64 // dropped because too many datagrams were waiting
	Sent       uint64 // datagrams written, duplicates included
}

// LossStats is a snapshot of both directions' counters.
type LossStats struct {
	Up   DirStats // client to relay
	Down DirStats // relay to client
}

// Bounds that keep a LossyProxy's memory fixed.
const (
	lossyMaxFlows   = 1024                  // client source addresses tracked
	lossyMaxPending = 8192                  // datagrams waiting per direction
	lossyHoldMax    = 20 * time.Millisecond // a held-back datagram goes out by then anyway
	lossyBufSize    = 64 << 10
)

// LossyProxy is a UDP proxy on 127.0.0.1 in front of a relay that drops,
// duplicates, delays and reorders datagrams in both directions. Each client
// source address gets its own upstream socket, so the relay sees one
// address per client. Use NewLossyProxy; Close (also run at the test's
// cleanup) stops every goroutine.
type LossyProxy struct {
	front *net.UDPConn
	up    *direction
	down  *direction

	mu     sync.Mutex // protects target, flows and closed
	target netip.AddrPort
	flows  map[netip.AddrPort]*flow
	closed bool

	closeOnce sync.Once
	wg        sync.WaitGroup
}

// flow is one client's path through the proxy.
type flow struct {
	client netip.AddrPort
	conn   *net.UDPConn // connected to the target
	// Owned by the direction that schedules for this flow (under its mu).
	held [2]*pending // per direction: the datagram held back for reordering
}

// NewLossyProxy starts a proxy in front of target and closes it when the
// test ends.
func NewLossyProxy(t testing.TB, target netip.AddrPort, cfg LossConfig) *LossyProxy {
	t.Helper()
	front, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatalf("relaytest: lossy proxy: %v", err)
	}
	front.SetReadBuffer(4 << 20) // bursts from many clients; best effort
	p := &LossyProxy{
		target: target,
		front:  front,
		flows:  make(map[netip.AddrPort]*flow),
	}
	p.up = newDirection(0, cfg, func(f *flow, b []byte) error {
		_, err := f.conn.Write(b)
		return err
	})
	p.down = newDirection(1, cfg, func(f *flow, b []byte) error {
		_, err := p.front.WriteToUDPAddrPort(b, f.client)
		return err
	})
	p.wg.Add(3)
	go func() { defer p.wg.Done(); p.up.run() }()
	go func() { defer p.wg.Done(); p.down.run() }()
	go func() { defer p.wg.Done(); p.readFront() }()
	t.Cleanup(p.Close)
	return p
}

// Addr is the address clients send to instead of the relay's.
func (p *LossyProxy) Addr() netip.AddrPort {
	return p.front.LocalAddr().(*net.UDPAddr).AddrPort()
}

// SetTarget points the proxy at another relay, as if the relay had moved
// or restarted elsewhere: every client's upstream socket is closed, and the
// next datagram from each client opens a new one to target.
func (p *LossyProxy) SetTarget(target netip.AddrPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.target = target
	for from, f := range p.flows {
		f.conn.Close() // its reader returns
		delete(p.flows, from)
	}
}

// Stats returns the counters of both directions.
func (p *LossyProxy) Stats() LossStats {
	return LossStats{Up: p.up.stats(), Down: p.down.stats()}
}

// Close stops the proxy and waits for its goroutines. It is idempotent.
func (p *LossyProxy) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		flows := p.flows
		p.flows = nil
		p.mu.Unlock()
		p.front.Close()
		for _, f := range flows {
			f.conn.Close()
		}
		p.up.close()
		p.down.close()
		p.wg.Wait()
	})
}

// readFront reads client datagrams and hands them to the up direction.
func (p *LossyProxy) readFront() {
	buf := make([]byte, lossyBufSize)
	for {
		n, from, err := p.front.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		f := p.flowFor(netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		if f == nil {
			continue
		}
		p.up.submit(f, buf[:n])
	}
}

// flowFor returns from's flow, creating its upstream socket and reader the
// first time. It returns nil when closed or out of flows.
func (p *LossyProxy) flowFor(from netip.AddrPort) *flow {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if f, ok := p.flows[from]; ok {
		return f
	}
	if len(p.flows) >= lossyMaxFlows {
		return nil
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(p.target))
	if err != nil {
		return nil
	}
	conn.SetReadBuffer(4 << 20)
	f := &flow{client: from, conn: conn}
	p.flows[from] = f
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, lossyBufSize)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // e.g. ECONNREFUSED while the target is down
			}
			p.down.submit(f, buf[:n])
		}
	}()
	return f
}

// pending is one datagram waiting for its time.
type pending struct {
	due   time.Time
	order uint64 // ties on due go out in arrival order
	flow  *flow
	data  []byte
	index int // in the heap; -1 once popped
}

type pendingHeap []*pending

func (h pendingHeap) Len() int { return len(h) }
func (h pendingHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].order < h[j].order
}
func (h pendingHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *pendingHeap) Push(x any) {
	p := x.(*pending)
	p.index = len(*h)
	*h = append(*h, p)
}
func (h *pendingHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	p.index = -1
	*h = old[:len(old)-1]
	return p
}

// direction decides the fate of each datagram going one way and sends the
// survivors from one scheduler goroutine, in due order.
type direction struct {
	idx  int // 0 up, 1 down: the flow's held slot
	cfg  LossConfig
	send func(*flow, []byte) error
	wake chan struct{} // a token when the heap's head may have changed
	done chan struct{}

	mu    sync.Mutex // protects rng, q and order, and flows' held slots for idx
	rng   *rand.Rand
	q     pendingHeap
	order uint64

	received, dropped, duplicated, reordered, overflow, sent atomic.Uint64
}

func newDirection(idx int, cfg LossConfig, send func(*flow, []byte) error) *direction {
	return &direction{
		idx:  idx,
		cfg:  cfg,
		send: send,
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
		rng:  rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(idx)+0x9e3779b97f4a7c15)),
	}
}

func (d *direction) close() { close(d.done) }

func (d *direction) stats() DirStats {
	return DirStats{
		Received:   d.received.Load(),
		Dropped:    d.dropped.Load(),
		Duplicated: d.duplicated.Load(),
		Reordered:  d.reordered.Load(),
		Overflow:   d.overflow.Load(),
		Sent:       d.sent.Load(),
	}
}

// submit decides b's fate and queues what survives; b is copied.
func (d *direction) submit(f *flow, b []byte) {
	d.received.Add(1)
	now := time.Now()
	d.mu.Lock()
	// Draw every decision every time, so the sequence of draws does not
	// depend on earlier outcomes' branches.
	lost := d.rng.Float64() < d.cfg.Loss
	dup := d.rng.Float64() < d.cfg.Dup
	reorder := d.rng.Float64() < d.cfg.Reorder
	var jitter time.Duration
	if d.cfg.Jitter > 0 {
		jitter = time.Duration(d.rng.Int64N(int64(d.cfg.Jitter)))
	}
	if lost {
		d.mu.Unlock()
		d.dropped.Add(1)
		return
	}
	copies := 1
	if dup {
		copies = 2
	}
	if len(d.q)+copies > lossyMaxPending {
		d.mu.Unlock()
		d.overflow.Add(1)
		return
	}
	due := now.Add(d.cfg.Delay + jitter)
	base := d.order
	d.order += uint64(copies) + 1
	// A datagram held back earlier in this flow goes out right after this
	// one (and its duplicate).
	if h := f.held[d.idx]; h != nil {
		f.held[d.idx] = nil
		if h.index >= 0 {
			h.due, h.order = due, base+uint64(copies)+1
			heap.Fix(&d.q, h.index)
		}
	}
	data := append([]byte(nil), b...)
	var first *pending
	for i := range copies {
		p := &pending{due: due, order: base + uint64(i) + 1, flow: f, data: data}
		if i == 0 {
			first = p
		}
		heap.Push(&d.q, p)
	}
	if reorder {
		first.due = due.Add(lossyHoldMax)
		heap.Fix(&d.q, first.index)
		f.held[d.idx] = first
		d.reordered.Add(1)
	}
	d.mu.Unlock()
	if dup {
		d.duplicated.Add(1)
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// run sends queued datagrams when they are due, until close.
func (d *direction) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var batch []*pending
	for {
		now := time.Now()
		d.mu.Lock()
		for len(d.q) > 0 && !d.q[0].due.After(now) {
			p := heap.Pop(&d.q).(*pending)
			if p.flow.held[d.idx] == p {
				p.flow.held[d.idx] = nil
			}
			batch = append(batch, p)
		}
		wait := time.Hour
		if len(d.q) > 0 {
			wait = d.q[0].due.Sub(now)
		}
		d.mu.Unlock()
		for i, p := range batch {
			if d.send(p.flow, p.data) == nil {
				d.sent.Add(1)
			}
			batch[i] = nil
		}
		batch = batch[:0]
		t.Reset(wait)
		select {
		case <-d.done:
			return
		case <-d.wake:
		case <-t.C:
		}
	}
}
