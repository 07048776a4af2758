//go:build linux

package relay_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/pool"
	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// stream reads one member's socket on its own goroutine and checks the chats
// it receives. From each watched sender it expects "name says: <seq>" with seq
// counting up from 1, and, when ends is set, a final "name says: end" after
// which nothing more from that sender may come. Strict streams also reject
// gaps; lenient ones (for lossy runs) only reject reordering and duplicates.
type stream struct {
	conn   *net.UDPConn
	strict bool
	ends   bool
	notify map[string]chan struct{} // woken after each chat from that sender, if set

	mu      sync.Mutex
	count   map[string]int // chats received per sender
	last    map[string]int // last sequence number per sender
	ended   map[string]bool
	nerrs   int
	errs    []string // the first few problems
	other   []string // the first few datagrams that are not a watched chat
	readErr error

	stop atomic.Bool
	done chan struct{}
}

func watch(c *client, senders []string, strict, ends bool, notify map[string]chan struct{}) *stream {
	s := &stream{
		conn: c.conn, strict: strict, ends: ends, notify: notify,
		count: map[string]int{}, last: map[string]int{}, ended: map[string]bool{},
		done: make(chan struct{}),
	}
	for _, name := range senders {
		s.count[name] = 0
	}
	go s.run()
	return s
}

func (s *stream) run() {
	defer close(s.done)
	buf := make([]byte, 2048)
	for !s.stop.Load() {
		// A short deadline only so that stop is noticed; a timeout is no error.
		s.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := s.conn.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			s.mu.Lock()
			s.readErr = err
			s.mu.Unlock()
			return
		}
		if s.take(string(buf[:n])) {
			return
		}
	}
}

func (s *stream) problem(format string, args ...any) {
	s.nerrs++
	if len(s.errs) < 10 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

// take records one datagram and reports whether every sender has ended.
func (s *stream) take(line string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, text, ok := strings.Cut(line, " says: ")
	if _, watched := s.count[name]; !ok || !watched {
		s.nerrs++
		if len(s.other) < 10 {
			s.other = append(s.other, line)
		}
		return false
	}
	if s.ended[name] {
		s.problem("%q after %s's end", line, name)
		return false
	}
	if s.ends && text == "end" {
		s.ended[name] = true
		for n := range s.count {
			if !s.ended[n] {
				return false
			}
		}
		return true
	}
	seq, err := strconv.Atoi(text)
	switch last := s.last[name]; {
	case err != nil:
		s.problem("%q: not a sequence number", line)
		return false
	case seq <= last:
		s.problem("%s: %d after %d (duplicate or out of order)", name, seq, last)
		return false
	case s.strict && seq != last+1:
		s.problem("%s: %d after %d (gap)", name, seq, last)
	}
	s.last[name] = seq
	s.count[name]++
	if ch := s.notify[name]; ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return false
}

func (s *stream) received(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[name]
}

// halt stops the reader and waits for it; it is safe to call more than once.
func (s *stream) halt() {
	s.stop.Store(true)
	<-s.done
}

// finished waits up to d for the reader to see every sender's end.
func (s *stream) finished(d time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(d):
		return false
	}
}

func (s *stream) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%v: count=%v last=%v ended=%v problems=%d %q other=%q readErr=%v",
		s.conn.LocalAddr(), s.count, s.last, s.ended, s.nerrs, s.errs, s.other, s.readErr)
}

// clean reports whether nothing unexpected was received.
func (s *stream) clean() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nerrs == 0 && s.readErr == nil
}

// paceChats sends "C name 1" .. "C name n" and then "C name end" on conn,
// keeping at most window chats in flight: sent minus the fewest received by
// any of the streams. It gives up when the receivers make no progress for
// stall.
func paceChats(conn *net.UDPConn, name string, n, window int, readers []*stream, wake <-chan struct{}, stall time.Duration) error {
	minRecv := func() int {
		m := n
		for _, r := range readers {
			m = min(m, r.received(name))
		}
		return m
	}
	timer := time.NewTimer(stall)
	defer timer.Stop()
	buf := make([]byte, 0, 64)
	for seq := 1; seq <= n; seq++ {
		if seq-1-minRecv() >= window {
			timer.Reset(stall)
			for seq-1-minRecv() >= window {
				select {
				case <-wake:
				case <-timer.C:
					return fmt.Errorf("%s: stalled with %d sent, %d received by the slowest receiver", name, seq-1, minRecv())
				}
			}
		}
		buf = strconv.AppendInt(append(append(buf[:0], "C "...), name+" "...), int64(seq), 10)
		if _, err := conn.Write(buf); err != nil {
			return fmt.Errorf("%s: send %d: %v", name, seq, err)
		}
	}
	if _, err := conn.Write([]byte("C " + name + " end")); err != nil {
		return fmt.Errorf("%s: send end: %v", name, err)
	}
	return nil
}

// TestPerSenderOrderWithWindow: on a real 16-worker pool, two senders chat
// at once, each with a window of 256 chats in flight; both receivers get
// every chat of each sender exactly once and in that sender's order: with
// batch I/O and one socket, with an SO_REUSEPORT group of two readers, and
// with batching off.
func TestPerSenderOrderWithWindow(t *testing.T) {
	for _, mode := range []struct {
		name    string
		readers int
		noBatch bool
	}{
		{"batch", 1, false},
		{"batch+reuseport", 2, false},
		{"nobatch", 1, true},
	} {
		t.Run(mode.name, func(t *testing.T) { testPerSenderOrder(t, mode.readers, mode.noBatch) })
	}
}

func testPerSenderOrder(t *testing.T, sockets int, noBatch bool) {
	const (
		n      = 10000
		window = 256
	)
	start := time.Now()
	p, err := pool.New[func()](16, func(f func()) { f() }, pool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the relay's: cleanups run last-in first-out, so the
	// pool closes only after the relay has shut down and its workers are done.
	t.Cleanup(func() {
		if err := p.Close(5 * time.Second); err != nil {
			t.Errorf("pool close: %v", err)
		}
	})
	rec := newRecorder()
	r := relaytest.StartReaders(t, sockets, func(c *relay.Config) {
		c.Workers = 16
		c.Executor = p
		c.Observer = rec
		c.NoBatch = noBatch
	})

	bigReader := func(name string) *client {
		c := dial(t, r)
		if err := c.conn.SetReadBuffer(4 << 20); err != nil {
			t.Fatal(err)
		}
		return c.login(name)
	}
	r1 := bigReader("r1")
	r2 := bigReader("r2")
	r1.expect("r2 joined the chat room")
	s1 := dial(t, r).login("s1")
	r1.expect("s1 joined the chat room")
	r2.expect("s1 joined the chat room")
	s2 := dial(t, r).login("s2")
	r1.expect("s2 joined the chat room")
	r2.expect("s2 joined the chat room")
	s1.expect("s2 joined the chat room")
	diag := func() string {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return fmt.Sprintf("relay %+v drops %v\n%s", r.Server.Stats(), rec.drops, sockDiag(t, r, r1, r2, s1, s2))
	}

	senders := []string{"s1", "s2"}
	wake := map[string]chan struct{}{"s1": make(chan struct{}, 1), "s2": make(chan struct{}, 1)}
	st1 := watch(r1, senders, true, true, wake)
	defer st1.halt()
	st2 := watch(r2, senders, true, true, wake)
	defer st2.halt()
	readers := []*stream{st1, st2}

	// The senders also receive each other's chats; nobody reads them and
	// their sockets drop what does not fit, which does not concern the relay.
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, s := range []*client{s1, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = paceChats(s.conn, senders[i], n, window, readers, wake[senders[i]], 5*time.Second)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("%v\n%s", err, diag())
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, st := range readers {
		if !st.finished(10 * time.Second) {
			t.Fatalf("no end marker from every sender within 10s: %v", st)
		}
	}
	for _, st := range readers {
		if !st.clean() {
			t.Errorf("unexpected datagrams: %v\n%s", st, diag())
		}
		for _, name := range senders {
			if got := st.received(name); got != n {
				t.Errorf("%v got %d chats from %s, want %d", st.conn.LocalAddr(), got, name, n)
			}
		}
	}
	r1.sync("r1") // nothing stray queued behind the end markers
	r2.sync("r2")
	t.Logf("%d chats from each of 2 senders to 2 receivers (window %d) in %v", n, window, time.Since(start))
}

// udpSock is one socket's row in /proc/net/udp{,6}.
type udpSock struct {
	found   bool
	rxQueue uint64 // bytes waiting to be read
	inode   uint64
	drops   uint64 // datagrams the kernel dropped (receive buffer full, ...)
}

// procUDP finds the loopback IPv4 socket bound to port in /proc/net/udp, or
// its IPv4-mapped twin in /proc/net/udp6.
func procUDP(t testing.TB, port int) udpSock {
	t.Helper()
	want := map[string]bool{
		fmt.Sprintf("0100007F:%04X", port):                         true,
		fmt.Sprintf("0000000000000000FFFF00000100007F:%04X", port): true,
	}
	var res udpSock
	for _, file := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		f, err := os.Open(file)
		if err != nil {
			if file == "/proc/net/udp6" && errors.Is(err, os.ErrNotExist) {
				continue
			}
			t.Fatalf("%v", err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 13 || !want[fs[1]] {
				continue
			}
			_, rx, _ := strings.Cut(fs[4], ":")
			q, err1 := strconv.ParseUint(rx, 16, 64)
			d, err2 := strconv.ParseUint(fs[len(fs)-1], 10, 64)
			ino, err3 := strconv.ParseUint(fs[9], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				f.Close()
				t.Fatalf("%s: cannot parse %q", file, sc.Text())
			}
			res.found = true
			res.rxQueue += q
			res.drops += d
			res.inode = ino
		}
		f.Close()
	}
	if !res.found {
		t.Fatalf("no socket on 127.0.0.1:%d in /proc/net/udp", port)
	}
	return res
}

// backlogDrops sums the per-CPU backlog drops of /proc/net/softnet_stat
// (second column): datagrams lost before reaching any socket. It is
// system-wide, so it is only a diagnostic.
func backlogDrops() uint64 {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0
	}
	var sum uint64
	for _, l := range strings.Split(string(b), "\n") {
		if fs := strings.Fields(l); len(fs) > 1 {
			v, _ := strconv.ParseUint(fs[1], 16, 64)
			sum += v
		}
	}
	return sum
}

func port(c *client) int { return c.conn.LocalAddr().(*net.UDPAddr).Port }

func sockDiag(t testing.TB, r *relaytest.Relay, cs ...*client) string {
	var b strings.Builder
	fmt.Fprintf(&b, "relay socket %+v", procUDP(t, int(r.Addr.Port())))
	for _, c := range cs {
		fmt.Fprintf(&b, "; %v %+v", c.conn.LocalAddr(), procUDP(t, port(c)))
	}
	return b.String()
}

// TestUnpacedBurstAccounting: a sender fires chats as fast as it can at a
// relay with small queues and a receiver with a small buffer. Whatever
// arrives is in order and without duplicates, and every chat sent is either
// delivered or counted as dropped somewhere: by the relay (queue limits,
// send errors) or by the kernel at the relay's or the receiver's socket.
func TestUnpacedBurstAccounting(t *testing.T) {
	const n = 10000
	start := time.Now()
	rec := newRecorder()
	r := relaytest.StartSmallBuffer(t, 64<<10, func(c *relay.Config) {
		c.Observer = rec
		c.QueueLimit = 256
		c.SenderQueueLimit = 192
	})
	rcv := dial(t, r)
	if err := rcv.conn.SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	rcv.login("r")
	snd := dial(t, r).login("s")
	rcv.expect("s joined the chat room")
	rcv.sync("r")
	// A handler counts a delivery just after the send, so the test can see
	// a reply before its count: wait for the five so far (two OKs, s's join
	// notice to r, two more OKs) before the baseline.
	snd.sync("s")
	eventually(t, "the logins' deliveries to be counted", func() bool { return r.Server.Stats().Deliveries == 5 })

	type numbers struct {
		delivered, queueFull, senderQueue, otherDrops, sendErrs, kRelay, kRecv uint64
		relayReceived, relayDeliveries, backlog, relayRx, recvRx               uint64
		running                                                                int
	}
	relayPort, recvPort := int(r.Addr.Port()), port(rcv)
	var st *stream
	measure := func() numbers {
		stats := r.Server.Stats()
		rs, cs := procUDP(t, relayPort), procUDP(t, recvPort)
		rec.mu.Lock()
		var other uint64
		for reason, k := range rec.drops {
			if reason != relay.DropQueueFull && reason != relay.DropSenderQueue && reason != relay.DropRcvbuf {
				other += uint64(k)
			}
		}
		qf, sq := uint64(rec.drops[relay.DropQueueFull]), uint64(rec.drops[relay.DropSenderQueue])
		rec.mu.Unlock()
		var delivered uint64
		if st != nil {
			delivered = uint64(st.received("s"))
		}
		return numbers{
			delivered: delivered, queueFull: qf, senderQueue: sq, otherDrops: other,
			sendErrs: stats.SendErrors, kRelay: rs.drops, kRecv: cs.drops,
			relayReceived: stats.DatagramsReceived, relayDeliveries: stats.Deliveries,
			backlog: backlogDrops(), relayRx: rs.rxQueue, recvRx: cs.rxQueue,
			running: r.Server.Running(),
		}
	}
	base := measure()
	rec.mu.Lock()
	baseRcvbuf := uint64(rec.drops[relay.DropRcvbuf])
	rec.mu.Unlock()
	st = watch(rcv, []string{"s"}, false, false, nil)
	defer st.halt()

	for seq := 1; seq <= n; seq++ {
		snd.send("C s " + strconv.Itoa(seq))
	}
	sendTime := time.Since(start)

	delta := func() numbers {
		m := measure()
		return numbers{
			delivered: m.delivered, queueFull: m.queueFull - base.queueFull,
			senderQueue: m.senderQueue - base.senderQueue, otherDrops: m.otherDrops - base.otherDrops,
			sendErrs: m.sendErrs - base.sendErrs, kRelay: m.kRelay - base.kRelay, kRecv: m.kRecv - base.kRecv,
			relayReceived: m.relayReceived - base.relayReceived, relayDeliveries: m.relayDeliveries - base.relayDeliveries,
			backlog: m.backlog - base.backlog, relayRx: m.relayRx, recvRx: m.recvRx, running: m.running,
		}
	}
	total := func(d numbers) uint64 {
		return d.delivered + d.queueFull + d.senderQueue + d.otherDrops + d.sendErrs + d.kRelay + d.kRecv
	}
	// Settled: both sockets empty, no relay worker running, and the sum
	// reached what was sent (it only grows, so it cannot pass n and come back).
	settled := func(d numbers) bool {
		return d.relayRx == 0 && d.recvRx == 0 && d.running == 0 && total(d) >= n
	}
	var d numbers
	deadline := time.Now().Add(10 * time.Second)
	for d = delta(); !settled(d); d = delta() {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	st.halt()
	d = delta()

	t.Logf("sent %d in %v: delivered %d, relay drops queue_full %d sender_queue %d other %d, relay send errors %d, "+
		"kernel drops at relay socket %d, at receiver socket %d (sum %d); relay read %d, handed to kernel %d; "+
		"system-wide backlog drops %d; settled after %v",
		n, sendTime, d.delivered, d.queueFull, d.senderQueue, d.otherDrops, d.sendErrs,
		d.kRelay, d.kRecv, total(d), d.relayReceived, d.relayDeliveries, d.backlog, time.Since(start))

	if !st.clean() {
		t.Errorf("receiver saw duplicates, reordering or stray datagrams: %v", st)
	}
	if !settled(d) || total(d) != n {
		t.Errorf("accounting does not add up: sent %d != delivered %d + queue_full %d + sender_queue %d + other drops %d + send errors %d + kernel drops at relay %d + at receiver %d = %d\n"+
			"(relay socket rx_queue %d, receiver rx_queue %d, relay workers running %d, backlog drops %d)\nreceiver: %v",
			n, d.delivered, d.queueFull, d.senderQueue, d.otherDrops, d.sendErrs, d.kRelay, d.kRecv, total(d),
			d.relayRx, d.recvRx, d.running, d.backlog, st)
	}
	if d.otherDrops != 0 {
		t.Errorf("relay dropped %d chats for reasons other than its queue limits: %v", d.otherDrops, rec.drops)
	}
	// Cross-checks between the stages: what the relay read is what the
	// kernel did not drop at its socket; what it handed to the kernel for the
	// receiver either arrived or was dropped at the receiver's socket.
	if d.relayReceived+d.kRelay != n {
		t.Errorf("relay read %d + kernel drops at relay socket %d != sent %d", d.relayReceived, d.kRelay, n)
	}
	// The relay counts the kernel's drops at its own socket too
	// (SO_RXQ_OVFL, datagrams_dropped_total{reason="rcvbuf"}); the count
	// arrives with the next datagram it reads, so send it one.
	snd.send("x")
	eventually(t, "the relay to report the kernel's drops at its socket", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return uint64(rec.drops[relay.DropRcvbuf])-baseRcvbuf == d.kRelay
	})
	if d.relayDeliveries != d.delivered+d.kRecv {
		t.Errorf("relay handed %d to the kernel, but receiver got %d + kernel dropped %d", d.relayDeliveries, d.delivered, d.kRecv)
	}
	if d.delivered == 0 {
		t.Errorf("nothing was delivered")
	}
}

// gateExec is an Executor whose tasks, once gating is on, wait for release
// before they run: a pool whose workers are all stuck.
type gateExec struct {
	gating  atomic.Bool
	release chan struct{}
	once    sync.Once
	held    atomic.Int64 // tasks started while gating
	wg      sync.WaitGroup
}

func (e *gateExec) Invoke(task func()) error {
	e.wg.Add(1)
	if e.gating.Load() {
		e.held.Add(1)
		go func() {
			defer e.wg.Done()
			<-e.release
			task()
		}()
		return nil
	}
	go func() {
		defer e.wg.Done()
		task()
	}()
	return nil
}

func (e *gateExec) open() { e.once.Do(func() { close(e.release) }) }

// poolObs is the recorder plus a PoolRejected count.
type poolObs struct {
	*recorder
	rejected atomic.Int64
}

func (o *poolObs) PoolRejected() { o.rejected.Add(1) }

// readChats reads datagrams on c until it has seen "name says: end" from
// every sender, and returns the chats before the ends, per sender.
func readChats(c *client, senders ...string) map[string][]string {
	c.t.Helper()
	got := map[string][]string{}
	ended := 0
	for range 50 {
		line := c.recv()
		name, text, ok := strings.Cut(line, " says: ")
		if !ok {
			c.t.Fatalf("%v: unexpected %q", c.conn.LocalAddr(), line)
		}
		if text == "end" {
			ended++
			if ended == len(senders) {
				return got
			}
			continue
		}
		got[name] = append(got[name], text)
	}
	c.t.Fatalf("%v: no end marker after 50 datagrams: %v", c.conn.LocalAddr(), got)
	return nil
}

func seqs(from, to int) []string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, strconv.Itoa(i))
	}
	return s
}

// TestPoolSaturationDropsWithoutBlocking: with its only worker stuck, the
// relay keeps reading, queues up to its limits and counts the rest as
// dropped; once the worker is free, exactly the queued chats are delivered,
// in each sender's order.
func TestPoolSaturationDropsWithoutBlocking(t *testing.T) {
	const (
		n           = 100
		queueLimit  = 8
		senderLimit = 5
	)
	start := time.Now()
	exec := &gateExec{release: make(chan struct{})}
	t.Cleanup(exec.wg.Wait) // after the relay's shutdown: no task outlives the test
	obs := &poolObs{recorder: newRecorder()}
	r := relaytest.Start(t, func(c *relay.Config) {
		c.Workers = 1
		c.QueueLimit = queueLimit
		c.SenderQueueLimit = senderLimit
		c.Executor = exec
		c.Observer = obs
		relay.HandOffAlways(c) // every datagram waits for the gated worker
	})
	t.Cleanup(exec.open) // before the relay's shutdown, which waits for the queue

	b := dial(t, r).login("b")
	a := dial(t, r).login("a")
	b.expect("a joined the chat room")
	c := dial(t, r).login("c")
	b.expect("c joined the chat room")
	a.expect("c joined the chat room")
	b.sync("b")
	a.sync("a")
	c.sync("c")
	eventually(t, "relay workers idle", func() bool { return r.Server.Running() == 0 })
	exec.gating.Store(true)

	// a fills its own lane (sender_queue), then c fills what is left of the
	// relay-wide queue (queue_full).
	base := r.Server.Stats().DatagramsReceived
	for i := 1; i <= n; i++ {
		a.send("C a " + strconv.Itoa(i))
	}
	eventually(t, "relay reading a's chats while its worker is stuck", func() bool {
		return r.Server.Stats().DatagramsReceived == base+n
	})
	for i := 1; i <= n; i++ {
		c.send("C c " + strconv.Itoa(i))
	}
	eventually(t, "relay reading c's chats while its worker is stuck", func() bool {
		return r.Server.Stats().DatagramsReceived == base+2*n
	})

	// Still gated: nothing has been handled, the one worker is held.
	if h := exec.held.Load(); h != 1 {
		t.Errorf("%d tasks started while gated, want 1", h)
	}
	if got := r.Server.Running(); got != 1 {
		t.Errorf("Running() = %d while gated, want 1", got)
	}
	if got := r.Server.Stats().Queued; got != queueLimit {
		t.Errorf("Stats().Queued = %d while gated, want %d", got, queueLimit)
	}
	wantSenderQueue := n - senderLimit
	wantQueueFull := n - (queueLimit - senderLimit)
	if got := obs.drop(relay.DropSenderQueue); got != wantSenderQueue {
		t.Errorf("sender_queue drops = %d, want %d", got, wantSenderQueue)
	}
	if got := obs.drop(relay.DropQueueFull); got != wantQueueFull {
		t.Errorf("queue_full drops = %d, want %d", got, wantQueueFull)
	}
	if got := obs.rejected.Load(); got != int64(wantQueueFull) {
		t.Errorf("PoolRejected = %d, want %d (one per queue_full drop)", got, wantQueueFull)
	}

	exec.open()
	// The end markers go out once the queue has drained (else they would be
	// dropped as queue_full too); each proves nothing more of its sender's
	// chats follows.
	eventually(t, "relay workers done after release", func() bool { return r.Server.Running() == 0 })
	a.send("C a end")
	c.send("C c end")
	wantA, wantC := seqs(1, senderLimit), seqs(1, queueLimit-senderLimit)
	check := func(who *client, got map[string][]string, want map[string][]string) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%v received %v, want %v", who.conn.LocalAddr(), got, want)
		}
	}
	check(b, readChats(b, "a", "c"), map[string][]string{"a": wantA, "c": wantC})
	check(a, readChats(a, "c"), map[string][]string{"c": wantC})
	check(c, readChats(c, "a"), map[string][]string{"a": wantA})
	b.sync("b")
	a.sync("a")
	c.sync("c")

	if got := obs.drop(relay.DropSenderQueue) + obs.drop(relay.DropQueueFull); got != wantSenderQueue+wantQueueFull {
		t.Errorf("drops changed after release: %d, want %d", got, wantSenderQueue+wantQueueFull)
	}
	t.Logf("gated: %d sender_queue, %d queue_full (%d PoolRejected) drops; released: %d of a and %d of c delivered; %v",
		obs.drop(relay.DropSenderQueue), obs.drop(relay.DropQueueFull), obs.rejected.Load(), len(wantA), len(wantC), time.Since(start))
}
