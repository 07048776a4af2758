package jetstream_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/jetstream"
)

// holdProxy is a TCP proxy to a NATS server that can hold the server's
// answers back (the connection stays up): a request goes through and is
// carried out, and its answer comes after the requester gave up on it, as
// when a server dies between storing a write and answering it.
type holdProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex // protects held, wake, conns
	held  bool
	wake  chan struct{} // closed when held ends
	conns []net.Conn

	wg sync.WaitGroup
}

func newHoldProxy(t *testing.T, target string) *holdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln, target: target, wake: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *holdProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *holdProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(s, c); s.Close() }()
		go func() { defer p.wg.Done(); p.copyAnswers(c, s); c.Close() }()
	}
}

// copyAnswers copies what the server says to the client, waiting while
// answers are held.
func (p *holdProxy) copyAnswers(c, s net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		held, wake := p.held, p.wake
		p.mu.Unlock()
		if held {
			<-wake
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *holdProxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = true
}

func (p *holdProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held {
		p.held = false
		close(p.wake)
		p.wake = make(chan struct{})
	}
}

func (p *holdProxy) close() {
	p.release()
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// startServer runs a JetStream nats-server on a loopback port until the
// test ends.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	return runServer(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
}

// runServer starts a nats-server with opts, waits until it takes clients
// and shuts it down when the test ends.
func runServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats-server %s not ready", opts.ServerName)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// A lease refresh that the server carried out but whose answer was lost
// (its leader died before answering, or the connection did) must not cost
// the member its name: the next refresh finds a revision it did not expect,
// and that write was its own. Before, the relay let the name go as if
// another had taken it; after the lease anyone could claim the name of a
// member still logged in.
func TestLeaseRefreshWithLostAnswerKeepsTheName(t *testing.T) {
	ns := startServer(t)
	proxy := newHoldProxy(t, ns.Addr().String())
	nc, err := nats.Connect(proxy.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	viaProxy, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	direct := dial(t, ns)

	const lease = 3 * time.Second // refreshed each second
	var failed atomic.Int32
	d1, err := jetstream.NewDirectory(viaProxy, jetstream.DirectoryOptions{Lease: lease, Timeout: 400 * time.Millisecond, OnRefreshFailed: func() { failed.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d1.Close)
	d2, err := jetstream.NewDirectory(direct, jetstream.DirectoryOptions{Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d2.Close)
	kv, err := direct.KeyValue(context.Background(), "chatrelay_names")
	if err != nil {
		t.Fatal(err)
	}
	revision := func() uint64 {
		keys, err := kv.ListKeys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var rev uint64
		for k := range keys.Keys() {
			e, err := kv.Get(context.Background(), k)
			if err != nil {
				t.Fatal(err)
			}
			rev = e.Revision()
		}
		return rev
	}

	if err := d1.Claim("alice", "session-1"); err != nil {
		t.Fatal(err)
	}
	// One refresh is carried out, its answer held until d1 gave up on it.
	before := revision()
	proxy.hold()
	deadline := time.Now().Add(5 * time.Second)
	for failed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no refresh failed while the answers were held")
		}
		time.Sleep(10 * time.Millisecond)
	}
	proxy.release()
	released := time.Now()
	if after := revision(); after == before {
		t.Fatalf("the refresh was not carried out (revision %d): the test shows nothing", after)
	}

	// Two leases later alice is still alice's: nobody else gets her name.
	end := time.Now().Add(2 * lease)
	for time.Now().Before(end) {
		if err := d2.Claim("alice", "session-2"); !errors.Is(err, relay.ErrNameTaken) {
			t.Fatalf("%v after the lost answer, another session's claim of a name in use: %v; want relay.ErrNameTaken", time.Since(released).Round(time.Millisecond), err)
		}
		if owner, ok := d2.Lookup("alice"); !ok || owner != "session-1" {
			t.Fatalf("alice's name is held by %q (%v), want session-1", owner, ok)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
