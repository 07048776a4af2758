package relay_test

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// wait bounds every read in these tests: replies on loopback take
// microseconds, so a miss within it is a failure, not slowness (it is
// generous because -race on a loaded 2-core machine can stall for seconds).
const wait = 10 * time.Second

// client is one member's UDP socket, connected to the relay like a classic
// client's.
type client struct {
	t    testing.TB
	conn *net.UDPConn
	buf  []byte
}

func dial(t testing.TB, r *relaytest.Relay) *client {
	t.Helper()
	return dialTo(t, r.Addr)
}

func dialTo(t testing.TB, to netip.AddrPort) *client {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatalf("dial %v: %v", to, err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c, buf: make([]byte, 64<<10)}
}

// in returns c reporting to t, for use inside a subtest.
func (c *client) in(t testing.TB) *client {
	cc := *c
	cc.t = t
	return &cc
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// recv returns the next datagram, failing the test if none arrives in time.
func (c *client) recv() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(wait))
	n, err := c.conn.Read(c.buf)
	if err != nil {
		c.t.Fatalf("%v: waiting for a datagram: %v", c.conn.LocalAddr(), err)
	}
	return string(c.buf[:n])
}

// expect fails unless the next datagram is exactly want.
func (c *client) expect(want string) {
	c.t.Helper()
	if got := c.recv(); got != want {
		c.t.Fatalf("%v: got %q, want %q", c.conn.LocalAddr(), got, want)
	}
}

// login logs name in and expects OK.
func (c *client) login(name string) *client {
	c.t.Helper()
	c.send("L " + name)
	c.expect("OK")
	return c
}

// sync proves that nothing is queued for c ahead of a marker: c repeats its
// own login, which the relay handles after everything c sent before and
// answers with OK. If anything else arrives first (an echo, a notice meant
// for others), the test fails.
func (c *client) sync(name string) {
	c.t.Helper()
	c.send("L " + name)
	c.expect("OK")
}

// recorder is an Observer that remembers counts, for asserting drops.
type recorder struct {
	relay.NopObserver
	mu      sync.Mutex
	drops   map[string]int
	logins  map[string]int
	kinds   map[string]int
	panics  int
	onChat  func() // called on every chat broadcast, may panic
	members int
}

func newRecorder() *recorder {
	return &recorder{drops: map[string]int{}, logins: map[string]int{}, kinds: map[string]int{}}
}

func (r *recorder) DatagramDropped(reason string) { r.mu.Lock(); r.drops[reason]++; r.mu.Unlock() }
func (r *recorder) Login(result string)           { r.mu.Lock(); r.logins[result]++; r.mu.Unlock() }
func (r *recorder) Panic()                        { r.mu.Lock(); r.panics++; r.mu.Unlock() }
func (r *recorder) Members(n int)                 { r.mu.Lock(); r.members = n; r.mu.Unlock() }
func (r *recorder) Broadcast(kind string) {
	r.mu.Lock()
	r.kinds[kind]++
	f := r.onChat
	r.mu.Unlock()
	if kind == relay.KindChat && f != nil {
		f()
	}
}

func (r *recorder) drop(reason string) int { r.mu.Lock(); defer r.mu.Unlock(); return r.drops[reason] }
func (r *recorder) login(result string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logins[result]
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// admin sends one admin request and returns its data lines and final line.
func admin(t testing.TB, r *relaytest.Relay, req string) (lines []string, final string) {
	t.Helper()
	c, err := net.Dial("unix", r.AdminSocket)
	if err != nil {
		t.Fatalf("admin dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(req + "\n")); err != nil {
		t.Fatalf("admin write: %v", err)
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		l := sc.Text()
		if l == relay.AdminOK || strings.HasPrefix(l, relay.AdminErrPrefix) {
			return lines, l
		}
		lines = append(lines, l)
	}
	t.Fatalf("admin %q: no final line (%v)", req, sc.Err())
	return nil, ""
}

func (r *recorder) kind(kind string) int { r.mu.Lock(); defer r.mu.Unlock(); return r.kinds[kind] }
