package relaytest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// ants starts its default pool when imported: IgnoreCurrent skips
		// exactly the goroutines alive before the tests, so a pool a test
		// forgot to close is still caught (naming ants' functions would
		// hide it).
		goleak.IgnoreCurrent(),
	)
}

// echoServer echoes every datagram to its sender and records what arrived,
// and from where.
type echoServer struct {
	conn *net.UDPConn
	done chan struct{}

	mu    sync.Mutex // protects got and froms
	got   []string
	froms map[netip.AddrPort]int
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadBuffer(4 << 20)
	e := &echoServer{conn: conn, done: make(chan struct{}), froms: make(map[netip.AddrPort]int)}
	go func() {
		defer close(e.done)
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			e.mu.Lock()
			e.got = append(e.got, string(buf[:n]))
			e.froms[from]++
			e.mu.Unlock()
			conn.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { conn.Close(); <-e.done })
	return e
}

func (e *echoServer) addr() netip.AddrPort { return e.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (e *echoServer) received() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

// peer is a client socket that counts what comes back.
type peer struct {
	conn *net.UDPConn
	done chan struct{}

	mu  sync.Mutex // protects got
	got []string
}

func dialPeer(t *testing.T, to netip.AddrPort) *peer {
	t.Helper()
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadBuffer(4 << 20)
	p := &peer{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			p.mu.Lock()
			p.got = append(p.got, string(buf[:n]))
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-p.done })
	return p
}

func (p *peer) received() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

// sendN sends the datagrams "0".."n-1", paced so that no socket buffer
// overflows: what is lost is what the proxy decided.
func (p *peer) sendN(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		if _, err := p.conn.Write([]byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond)
		}
	}
}

// settle waits until the proxy has sent all it will send.
func settle(t *testing.T, lp *LossyProxy, upWant uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := lp.Stats()
		if s.Up.Received >= upWant && s.Down.Received == s.Up.Sent &&
			s.Down.Received == s.Down.Dropped+s.Down.Overflow+s.Down.Sent-s.Down.Duplicated {
			time.Sleep(50 * time.Millisecond) // held datagrams and the last reads
			if s2 := lp.Stats(); s2 == s {
				return
			}
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy did not settle: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLossyProxyLossRate(t *testing.T) {
	e := startEcho(t)
	lp := NewLossyProxy(t, e.addr(), LossConfig{Seed: 1, Loss: 0.1})
	p := dialPeer(t, lp.Addr())
	const n = 10000
	p.sendN(t, n)
	settle(t, lp, n)
	s := lp.Stats()
	for _, d := range []struct {
		name string
		s    DirStats
	}{{"up", s.Up}, {"down", s.Down}} {
		rate := float64(d.s.Dropped) / float64(d.s.Received)
		// 10% of 10,000: sigma is 30; allow 4 sigma.
		if rate < 0.088 || rate > 0.112 {
			t.Errorf("%s: dropped %d of %d (%.3f), want about 0.10", d.name, d.s.Dropped, d.s.Received, rate)
		}
		if d.s.Duplicated != 0 || d.s.Reordered != 0 || d.s.Overflow != 0 {
			t.Errorf("%s: %+v: want only drops", d.name, d.s)
		}
	}
	if s.Up.Received != n {
		t.Errorf("up received %d, want %d (the kernel dropped some)", s.Up.Received, n)
	}
	if got := uint64(len(p.received())); got != s.Down.Sent {
		t.Errorf("client received %d, proxy sent %d", got, s.Down.Sent)
	}
	if got := uint64(len(e.received())); got != s.Up.Sent {
		t.Errorf("echo received %d, proxy sent %d", got, s.Up.Sent)
	}
}

func TestLossyProxyDuplicatesAndReorders(t *testing.T) {
	e := startEcho(t)
	lp := NewLossyProxy(t, e.addr(), LossConfig{Seed: 2, Dup: 0.05, Reorder: 0.05})
	p := dialPeer(t, lp.Addr())
	const n = 2000
	p.sendN(t, n)
	settle(t, lp, n)
	s := lp.Stats()
	if s.Up.Duplicated == 0 || s.Down.Duplicated == 0 || s.Up.Reordered == 0 || s.Down.Reordered == 0 {
		t.Fatalf("no duplicates or no reordering: %+v", s)
	}
	got := p.received()
	if want := n + int(s.Up.Duplicated); len(e.received()) != want {
		t.Errorf("echo got %d, want %d", len(e.received()), want)
	}
	seen := make(map[string]int)
	outOfOrder := 0
	prev := -1
	for _, g := range got {
		seen[g]++
		v, _ := strconv.Atoi(g)
		if v < prev {
			outOfOrder++
		}
		prev = max(prev, v)
	}
	if len(seen) != n {
		t.Errorf("%d distinct datagrams came back, want all %d (no loss configured)", len(seen), n)
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	if dups == 0 || outOfOrder == 0 {
		t.Errorf("client saw %d duplicates and %d out-of-order datagrams, want some of each", dups, outOfOrder)
	}
}

// The same seed makes the same decisions; another seed other ones.
func TestLossyProxyDeterministic(t *testing.T) {
	run := func(seed int64) []string {
		e := startEcho(t)
		lp := NewLossyProxy(t, e.addr(), LossConfig{Seed: seed, Loss: 0.3, Dup: 0.1, Reorder: 0.1})
		p := dialPeer(t, lp.Addr())
		p.sendN(t, 1000)
		settle(t, lp, 1000)
		got := e.received()
		slices.Sort(got)
		lp.Close()
		return got
	}
	a, b, c := run(7), run(7), run(8)
	if !slices.Equal(a, b) {
		t.Errorf("seed 7 twice: %d and %d datagrams arrived, or different ones", len(a), len(b))
	}
	if slices.Equal(a, c) {
		t.Error("seeds 7 and 8 made the same decisions")
	}
}

// Each client gets its own upstream address, and answers go back to the
// right client; delays apply in both directions.
func TestLossyProxyFlowsAndDelay(t *testing.T) {
	e := startEcho(t)
	const delay = 30 * time.Millisecond
	lp := NewLossyProxy(t, e.addr(), LossConfig{Seed: 3, Delay: delay, Jitter: 5 * time.Millisecond})
	a, b := dialPeer(t, lp.Addr()), dialPeer(t, lp.Addr())
	start := time.Now()
	a.conn.Write([]byte("from a"))
	b.conn.Write([]byte("from b"))
	deadline := time.Now().Add(5 * time.Second)
	for len(a.received()) < 1 || len(b.received()) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no echo")
		}
		time.Sleep(time.Millisecond)
	}
	if rtt := time.Since(start); rtt < 2*delay {
		t.Errorf("round trip %v, want at least %v", rtt, 2*delay)
	}
	if ga, gb := fmt.Sprint(a.received()), fmt.Sprint(b.received()); ga != "[from a]" || gb != "[from b]" {
		t.Errorf("a got %s, b got %s", ga, gb)
	}
	e.mu.Lock()
	nfrom := len(e.froms)
	e.mu.Unlock()
	if nfrom != 2 {
		t.Errorf("echo saw %d source addresses, want 2", nfrom)
	}
	lp.Close()
	lp.Close() // idempotent
}
