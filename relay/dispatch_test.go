package relay

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// countObs counts drops by reason for dispatcher tests.
type countObs struct {
	NopObserver
	mu       sync.Mutex
	drops    map[string]int
	rejected int
}

func (o *countObs) DatagramDropped(r string) { o.mu.Lock(); o.drops[r]++; o.mu.Unlock() }
func (o *countObs) PoolRejected()            { o.mu.Lock(); o.rejected++; o.mu.Unlock() }

// refusingExec refuses the first n Invokes, then runs tasks on goroutines.
type refusingExec struct {
	mu sync.Mutex
	n  int
	wg sync.WaitGroup
}

func (e *refusingExec) Invoke(task func()) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n != 0 {
		e.n--
		return errors.New("overloaded")
	}
	e.wg.Add(1)
	go func() { defer e.wg.Done(); task() }()
	return nil
}

// enqueue hands d one datagram, as a read batch of one (enqueueAll).
func (d *dispatcher) enqueue(g datagram) {
	gs := [1]datagram{g}
	d.enqueueAll(gs[:], nil)
}

// closeDrained closes d, failing t unless its queue drains within 5 s,
// then waits for the executor's tasks (wg) to return.
func closeDrained(t *testing.T, d *dispatcher, wg *sync.WaitGroup) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.close(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}

func newTestDispatcher(exec Executor, obs Observer, handled *[]int, mu *sync.Mutex, released *int) *dispatcher {
	return newDispatcher(exec, 100, 10, 4, false, obs,
		func(g *datagram) { mu.Lock(); *handled = append(*handled, g.n); *released++; mu.Unlock() },
		func(g *datagram) { mu.Lock(); *released++; mu.Unlock() }, nil)
}

func TestDispatcherExecutorRefusingDropsAndCounts(t *testing.T) {
	obs := &countObs{drops: map[string]int{}}
	exec := &refusingExec{n: -1} // refuses forever
	var (
		mu       sync.Mutex
		handled  []int
		released int
	)
	d := newTestDispatcher(exec, obs, &handled, &mu, &released)
	from := netip.MustParseAddrPort("127.0.0.1:1000")
	for i := 0; i < 3; i++ {
		d.enqueue(datagram{n: i, from: from})
	}
	if obs.drops[DropQueueFull] != 3 || obs.rejected != 3 || released != 3 || len(handled) != 0 || d.queued != 0 || len(d.lanes) != 0 {
		t.Fatalf("drops %v rejected %d released %d handled %v queued %d lanes %d", obs.drops, obs.rejected, released, handled, d.queued, len(d.lanes))
	}
}

func TestDispatcherRetriesABrieflyFullPool(t *testing.T) {
	obs := &countObs{drops: map[string]int{}}
	exec := &refusingExec{n: invokeRetries} // refuses just short of giving up
	var (
		mu       sync.Mutex
		handled  []int
		released int
	)
	d := newTestDispatcher(exec, obs, &handled, &mu, &released)
	from := netip.MustParseAddrPort("127.0.0.1:1000")
	d.enqueue(datagram{n: 7, from: from})
	closeDrained(t, d, &exec.wg)
	if len(handled) != 1 || handled[0] != 7 || len(obs.drops) != 0 {
		t.Fatalf("handled %v drops %v", handled, obs.drops)
	}
}

func TestDispatcherBoundsAndOrder(t *testing.T) {
	obs := &countObs{drops: map[string]int{}}
	gate := make(chan struct{})
	exec := &gatedExec{gate: gate}
	var (
		mu       sync.Mutex
		handled  []int
		released int
	)
	d := newTestDispatcher(exec, obs, &handled, &mu, &released)
	a := netip.MustParseAddrPort("127.0.0.1:1")
	for i := 0; i < 15; i++ { // per-sender bound is 10
		d.enqueue(datagram{n: i, from: a})
	}
	if obs.drops[DropSenderQueue] != 5 {
		t.Fatalf("sender_queue drops %d, want 5", obs.drops[DropSenderQueue])
	}
	close(gate)
	closeDrained(t, d, &exec.wg)
	for i, n := range handled {
		if n != i {
			t.Fatalf("handled out of order: %v", handled)
		}
	}
	if len(handled) != 10 || released != 15 {
		t.Fatalf("handled %d released %d, want 10 and 15", len(handled), released)
	}
	d.enqueue(datagram{n: 99, from: a})
	if obs.drops[DropShutdown] != 1 || released != 16 {
		t.Fatalf("after close: drops %v released %d", obs.drops, released)
	}
}

// gatedExec runs tasks on goroutines that wait for gate first.
type gatedExec struct {
	gate chan struct{}
	wg   sync.WaitGroup
}

func (e *gatedExec) Invoke(task func()) error {
	e.wg.Add(1)
	go func() { defer e.wg.Done(); <-e.gate; task() }()
	return nil
}

// countingExec counts Invokes and runs each task on a goroutine once gate
// is closed.
type countingExec struct {
	gate    chan struct{}
	mu      sync.Mutex
	invokes int
	wg      sync.WaitGroup
}

func (e *countingExec) Invoke(task func()) error {
	e.mu.Lock()
	e.invokes++
	e.mu.Unlock()
	e.wg.Add(1)
	go func() { defer e.wg.Done(); <-e.gate; task() }()
	return nil
}

// A read batch from several senders wakes one worker, which handles every
// sender's datagrams in that sender's order; where handlers may wait
// (perLane) each sender's lane gets a worker of its own.
func TestDispatcherWorkersForAReadBatch(t *testing.T) {
	for _, perLane := range []bool{false, true} {
		exec := &countingExec{gate: make(chan struct{})}
		var (
			mu      sync.Mutex
			handled = map[netip.AddrPort][]int{}
		)
		d := newDispatcher(exec, 100, 10, 8, perLane, NopObserver{},
			func(g *datagram) { mu.Lock(); handled[g.from] = append(handled[g.from], g.n); mu.Unlock() },
			func(*datagram) {}, nil)
		var batch []datagram
		senders := []netip.AddrPort{
			netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2"),
			netip.MustParseAddrPort("127.0.0.1:3"), netip.MustParseAddrPort("127.0.0.1:4"),
		}
		for i := range 3 {
			for _, from := range senders {
				batch = append(batch, datagram{n: i, from: from})
			}
		}
		d.enqueueAll(batch, nil)
		exec.mu.Lock()
		invokes := exec.invokes
		exec.mu.Unlock()
		want := 1
		if perLane {
			want = len(senders)
		}
		if invokes != want {
			t.Errorf("perLane=%v: %d workers started for one batch from %d senders, want %d", perLane, invokes, len(senders), want)
		}
		close(exec.gate)
		closeDrained(t, d, &exec.wg)
		for _, from := range senders {
			if got := handled[from]; len(got) != 3 || got[0] != 0 || got[1] != 1 || got[2] != 2 {
				t.Errorf("perLane=%v: %v handled %v, want [0 1 2]", perLane, from, got)
			}
		}
	}
}

// Where handlers may wait, one sender's waiting handler does not hold up
// another sender's datagrams.
func TestDispatcherPerLaneWaitDoesNotHoldOthers(t *testing.T) {
	exec := &countingExec{gate: make(chan struct{})}
	close(exec.gate)
	a, b := netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2")
	release := make(chan struct{})
	handledB := make(chan struct{})
	d := newDispatcher(exec, 100, 10, 8, true, NopObserver{},
		func(g *datagram) {
			if g.from == a {
				<-release // a store that does not answer yet
			} else {
				close(handledB)
			}
		},
		func(*datagram) {}, nil)
	d.enqueue(datagram{from: a})
	d.enqueue(datagram{from: b})
	select {
	case <-handledB:
	case <-time.After(5 * time.Second):
		t.Fatal("sender b's datagram waited for sender a's handler")
	}
	close(release)
	closeDrained(t, d, &exec.wg)
}

// remoteNames is a NameDirectory that does not say it is InProcess, as a
// directory behind the network would not.
type remoteNames struct{ *memDirectory }

func (remoteNames) InProcess() bool { return false }

// TestWorkersPerLaneWhereHandlersMayWait: a relay on the memory stores
// wakes one worker per read batch; one whose names, room logs, sessions or
// cluster may wait on the network gives every sender's lane a worker.
func TestWorkersPerLaneWhereHandlersMayWait(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want bool
	}{
		{"memory", Config{}, false},
		{"names behind the network", Config{Names: remoteNames{newMemDirectory()}}, true},
		{"names that do not say", Config{Names: struct{ NameDirectory }{newMemDirectory()}}, true},
		{"room logs that do not say", Config{Logs: struct{ RoomLogs }{NewMemoryLogs(64)}}, true},
	} {
		s, err := New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if s.disp.perLane != tc.want {
			t.Errorf("%s: a worker per lane %v, want %v", tc.name, s.disp.perLane, tc.want)
		}
	}
}

func (e *countingExec) count() int { e.mu.Lock(); defer e.mu.Unlock(); return e.invokes }

// A batch at an idle dispatcher wakes a worker (wokeIdle: the reader may
// yield to it); while a worker runs, a batch is that worker's (handedOff),
// whether its handlers may wait or not.
func TestDispatcherHandoffs(t *testing.T) {
	for _, perLane := range []bool{false, true} {
		var (
			mu         sync.Mutex
			handled    []int
			hold, held = make(chan struct{}), make(chan struct{})
		)
		exec := &countingExec{gate: make(chan struct{})}
		close(exec.gate)
		handle := func(g *datagram) {
			if g.n == 99 { // held while another batch arrives
				close(held)
				<-hold
			}
			mu.Lock()
			handled = append(handled, g.n)
			mu.Unlock()
		}
		d := newDispatcher(exec, 100, 10, 4, perLane, NopObserver{}, handle, func(*datagram) {}, nil)
		a := netip.MustParseAddrPort("127.0.0.1:1")
		if _, h := d.enqueueAll([]datagram{{n: 4, from: a}}, nil); h != wokeIdle || exec.count() != 1 {
			t.Errorf("perLane %v: at an idle dispatcher: handoff %d and %d tasks, want wokeIdle and 1", perLane, h, exec.count())
		}
		until(t, "the worker to finish", func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 1 })
		until(t, "the worker to end", func() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.workers == 0 })

		d.enqueue(datagram{n: 99, from: a})
		<-held
		if _, h := d.enqueueAll([]datagram{{n: 5, from: a}}, nil); h != handedOff {
			t.Errorf("perLane %v: the same sender's batch while its worker runs: handoff %d, want handedOff", perLane, h)
		}
		close(hold)
		until(t, "the held worker to finish", func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 3 })
		mu.Lock()
		if fmt.Sprint(handled) != "[4 99 5]" {
			t.Errorf("perLane %v: handled %v, want [4 99 5]", perLane, handled)
		}
		mu.Unlock()
		closeDrained(t, d, &exec.wg)
	}
}

// until polls cond every millisecond until it holds, failing t after 5 s.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A sender whose lane empties and fills again, as under load the same few
// senders' lanes do with every read batch, costs no allocation: lanes and
// the ready queue's array are reused. Each datagram is still handled once,
// in order.
func TestDispatcherReusesLanes(t *testing.T) {
	var handled []int
	d := newDispatcher(inlineExec{}, 100, 10, 4, false, NopObserver{},
		func(g *datagram) { handled = append(handled, g.n) }, func(*datagram) {}, nil)
	senders := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:4000"), netip.MustParseAddrPort("127.0.0.1:4001")}
	gs := make([]datagram, 0, len(senders))
	handled = make([]int, 0, 1024)
	n := 0
	cycle := func() {
		gs = gs[:0]
		for _, from := range senders {
			n++
			gs = append(gs, datagram{n: n, from: from})
		}
		// The worker it starts runs inline: the batch is handled on return.
		if _, h := d.enqueueAll(gs, nil); h != wokeIdle {
			t.Fatalf("batch %d: handoff %v, want wokeIdle", n, h)
		}
	}
	cycle() // the first lanes are new
	if allocs := testing.AllocsPerRun(200, cycle); allocs != 0 {
		t.Errorf("a lane that empties and fills again: %v allocations per read batch, want 0", allocs)
	}
	if len(handled) != n {
		t.Fatalf("%d datagrams handled, want %d", len(handled), n)
	}
	for i, got := range handled {
		if got != i+1 {
			t.Fatalf("datagram %d handled as %d: order lost", i+1, got)
		}
	}
}

// inlineExec runs each task in Invoke, before it returns.
type inlineExec struct{}

func (inlineExec) Invoke(task func()) error { task(); return nil }

// refusingExecForever refuses every task: a test that drains by itself
// must never start a worker.
type refusingExecForever struct{}

func (refusingExecForever) Invoke(func()) error { return errors.New("no workers here") }

// The ready queue stays a FIFO while lanes keep coming and never all
// leave, and its array does not grow with the lanes that went through it.
func TestDispatcherReadyQueueStaysSmall(t *testing.T) {
	d := newDispatcher(refusingExecForever{}, 100, 10, 4, false, NopObserver{}, func(*datagram) {}, func(*datagram) {}, nil)
	d.mu.Lock()
	defer d.mu.Unlock()
	lo := netip.MustParseAddr("127.0.0.1")
	pushed, popped := 0, 0
	push := func() { d.ready = append(d.ready, &lane{from: netip.AddrPortFrom(lo, uint16(pushed))}); pushed++ }
	for range 100 {
		push()
	}
	for range 20000 {
		push()
		if l := d.popReadyLocked(); l.from.Port() != uint16(popped) {
			t.Fatalf("lane %d came out as lane %d", popped, l.from.Port())
		}
		popped++
	}
	if d.readyLen() != 100 {
		t.Fatalf("%d lanes wait, want 100", d.readyLen())
	}
	if c := cap(d.ready); c > 400 {
		t.Fatalf("the ready queue's array holds %d lanes for 100 waiting, after 20,100 went through", c)
	}
}

// While lanes keep waiting, a worker sends what it handled (the fan-out's
// flush) after at most 16 datagrams, so no event waits behind the handling
// of more than 16 others (at 27,777 room10 chats/s, 64 were 2.3 ms); when
// no lane waits it sends at once.
func TestDispatcherFlushesABusyWorkersEventsOften(t *testing.T) {
	const most = 16 + 1 // a lane of two datagrams may take a worker one past 16
	exec := &countingExec{gate: make(chan struct{})}
	var (
		mu        sync.Mutex
		unflushed int   // handled since the last flush
		flushes   []int // datagrams each flush sent
	)
	d := newDispatcher(exec, 1000, 10, 1, false, NopObserver{},
		func(*datagram) { mu.Lock(); unflushed++; mu.Unlock() },
		func(*datagram) {},
		func() { mu.Lock(); flushes = append(flushes, unflushed); unflushed = 0; mu.Unlock() })
	// One read batch from 100 senders, 2 datagrams each: 100 lanes wait
	// for the one worker.
	var batch []datagram
	for i := range 200 {
		batch = append(batch, datagram{n: i, from: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1000+i%100))})
	}
	d.enqueueAll(batch, nil)
	close(exec.gate)
	closeDrained(t, d, &exec.wg)
	total := 0
	for _, n := range flushes {
		if n > most {
			t.Errorf("a flush sent the events of %d datagrams, want at most %d", n, most)
		}
		total += n
	}
	if total != 200 {
		t.Fatalf("%d flushes sent %d datagrams' events, want all 200", len(flushes), total)
	}
}
