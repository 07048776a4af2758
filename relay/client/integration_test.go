package client_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// kindCounter counts the relay's broadcasts by kind, and its drops by
// reason.
type kindCounter struct {
	relay.NopObserver
	mu    sync.Mutex // protects kinds and drops
	kinds map[string]int
	drops map[string]int
}

func (k *kindCounter) DatagramDropped(reason string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.drops == nil {
		k.drops = make(map[string]int)
	}
	k.drops[reason]++
}

func (k *kindCounter) Broadcast(kind string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kinds == nil {
		k.kinds = make(map[string]int)
	}
	k.kinds[kind]++
}

func (k *kindCounter) count(kind string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.kinds[kind]
}

// collector reads a client's events on its own goroutine.
type collector struct {
	c    *client.Client
	done chan struct{}

	mu  sync.Mutex // protects evs
	evs []client.Event
}

func collect(c *client.Client) *collector {
	k := &collector{c: c, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		for e := range c.Events() {
			k.mu.Lock()
			k.evs = append(k.evs, e)
			k.mu.Unlock()
		}
	}()
	return k
}

func (k *collector) events() []client.Event {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.evs)
}

// count counts the events matching f.
func (k *collector) count(f func(client.Event) bool) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, e := range k.evs {
		if f(e) {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dial(t *testing.T, addr, name string, seed uint64, opts ...func(*client.Config)) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := client.Config{Addr: addr, Name: name, Rand: rand.New(rand.NewPCG(seed, 1))}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func closeClient(t *testing.T, c *client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.Close(ctx)
}

func TestConversation(t *testing.T) {
	r := relaytest.Start(t)
	alice := dial(t, r.Addr.String(), "alice", 1)
	ka := collect(alice)
	bob := dial(t, r.Addr.String(), "bob", 2)
	kb := collect(bob)
	waitFor(t, 5*time.Second, "bob's join at alice", func() bool {
		return ka.count(func(e client.Event) bool { return e.Type == client.EventJoin && e.From == "bob" }) == 1
	})
	if _, err := alice.Send("hello 世界 \"quoted\""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "alice's message at bob", func() bool {
		return kb.count(func(e client.Event) bool { return e.Type == client.EventChat && e.Text == "hello 世界 \"quoted\"" }) == 1
	})
	waitFor(t, 5*time.Second, "alice's echo", func() bool {
		return ka.count(func(e client.Event) bool { return e.Type == client.EventChat && e.Self }) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	names, err := bob.Who(ctx)
	cancel()
	if err != nil || !slices.Equal(names, []string{"alice", "bob"}) {
		t.Errorf("who = %q, %v", names, err)
	}
	closeClient(t, bob)
	<-kb.done
	waitFor(t, 5*time.Second, "bob's leave at alice", func() bool {
		return ka.count(func(e client.Event) bool { return e.Type == client.EventLeave && e.From == "bob" }) == 1
	})
	if _, err := bob.Send("late"); !errors.Is(err, client.ErrClosed) {
		t.Errorf("send after close: %v", err)
	}
	closeClient(t, alice)
	<-ka.done
}

func TestRefused(t *testing.T) {
	r := relaytest.Start(t)
	dial(t, r.Addr.String(), "bob", 1)
	for _, tt := range []struct{ name, code string }{{"BOB", "taken"}, {"admin", "reserved"}, {"two words", "invalid"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := client.Dial(ctx, client.Config{Addr: r.Addr.String(), Name: tt.name})
		cancel()
		var re *client.RefusedError
		if !errors.As(err, &re) || re.Code != tt.code || re.Reason == "" {
			t.Errorf("dial %q: %v (%#v), want refused %s", tt.name, err, re, tt.code)
		}
		if c != nil {
			t.Errorf("dial %q returned a client", tt.name)
		}
	}
}

// Three clients each send 2,000 messages through a proxy that loses 10%,
// duplicates 5% and reorders in both directions. Everyone sees every
// message exactly once, in the same order, and the relay broadcast each
// once.
func TestLossy(t *testing.T) {
	obs := &kindCounter{}
	const perClient = 2000
	r := relaytest.Start(t, func(c *relay.Config) {
		c.Observer = obs
		// Every event of the test fits the ring: what is checked is that
		// repairs over a lossy link leave nothing missing. A repair that
		// comes after the ring moved on is a missed range, the relay's
		// honest answer (TestV2RepairAndMissed); with the default ring a
		// repair retried twice over lost datagrams could come that late.
		c.Ring = 4 * perClient // the test sends 3 × perClient chats
	})
	lp := relaytest.NewLossyProxy(t, r.Addr, relaytest.LossConfig{Seed: 42, Loss: 0.10, Dup: 0.05, Reorder: 0.05, Jitter: time.Millisecond})
	names := []string{"ann", "ben", "cat"}
	var cols []*collector
	for i, n := range names {
		c := dial(t, lp.Addr().String(), n, uint64(100+i), func(c *client.Config) { c.Window = 32 })
		cols = append(cols, collect(c))
	}
	for _, k := range cols {
		waitFor(t, 10*time.Second, "everyone's join", func() bool {
			return k.count(func(e client.Event) bool { return e.Type == client.EventJoin && !e.History }) >= 1 &&
				k.count(func(e client.Event) bool { return e.Type == client.EventJoin }) >= 1
		})
	}
	// Everyone must be in before the first message: wait until the last
	// joiner's join is seen everywhere.
	last := names[len(names)-1]
	for _, k := range cols {
		waitFor(t, 10*time.Second, last+"'s join", func() bool {
			return k.count(func(e client.Event) bool { return e.Type == client.EventJoin && e.From == last }) == 1
		})
	}
	start := time.Now()
	var wg sync.WaitGroup
	var sendErr atomic.Value
	for i, k := range cols {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perClient {
				if _, err := k.c.Send(fmt.Sprintf("%s %d", names[i], j)); err != nil {
					sendErr.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := sendErr.Load(); err != nil {
		t.Fatal(err)
	}
	total := perClient * len(names)
	isChat := func(e client.Event) bool { return e.Type == client.EventChat }
	for i, k := range cols {
		deadline := time.Now().Add(45 * time.Second)
		for k.count(isChat) < total {
			if time.Now().After(deadline) {
				for j, k := range cols {
					t.Logf("%s: %d chats, %d events, stats %+v", names[j], k.count(isChat), len(k.events()), k.c.Stats())
					for _, e := range k.events() {
						if e.Type != client.EventChat {
							t.Logf("   %+v", e)
						}
					}
				}
				obs.mu.Lock()
				t.Logf("relay: %+v, drops %v; proxy %+v", r.Server.Stats(), obs.drops, lp.Stats())
				obs.mu.Unlock()
				t.Fatalf("timed out waiting for %s to see every message", names[i])
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("%d messages everywhere in %v; proxy %+v", total, time.Since(start), lp.Stats())
	var seqs [][]uint64
	for i, k := range cols {
		var s []uint64
		seen := make(map[string]uint64)
		for _, e := range k.events() {
			switch e.Type {
			case client.EventChat:
				if prev, dup := seen[e.Text]; dup {
					t.Errorf("%s: %q twice: seq %d and %d (id %d)", names[i], e.Text, prev, e.Seq, e.ID)
				}
				seen[e.Text] = e.Seq
				// With a window of 32 a lost message can be overtaken by
				// its sender's next ones: room order is seq order, the
				// same for everyone, not necessarily typing order.
				s = append(s, e.Seq)
			case client.EventMissed, client.EventError, client.EventNewSession, client.EventRestarted, client.EventEnded:
				t.Errorf("%s: unexpected %+v", names[i], e)
			}
		}
		if len(s) != total {
			t.Errorf("%s saw %d messages, want %d", names[i], len(s), total)
		}
		if !slices.IsSorted(s) {
			t.Errorf("%s: seqs not in order", names[i])
		}
		seqs = append(seqs, s)
		st := k.c.Stats()
		t.Logf("%s: %+v", names[i], st)
	}
	for i := 1; i < len(seqs); i++ {
		if !slices.Equal(seqs[0], seqs[i]) {
			t.Errorf("%s and %s saw different seq sequences", names[0], names[i])
		}
	}
	if got := obs.count(relay.KindChat); got != total {
		t.Errorf("relay broadcast %d chats, want %d", got, total)
	}
	for _, k := range cols {
		closeClient(t, k.c)
		<-k.done
	}
}

// A client whose source port changes resumes with its token: the others
// see no leave or join, and nothing is lost either way.
func TestResume(t *testing.T) {
	r := relaytest.Start(t)
	alice := dial(t, r.Addr.String(), "alice", 1)
	ka := collect(alice)
	bob := dial(t, r.Addr.String(), "bob", 2)
	kb := collect(bob)
	waitFor(t, 5*time.Second, "bob's join", func() bool {
		return ka.count(func(e client.Event) bool { return e.Type == client.EventJoin && e.From == "bob" }) == 1
	})
	isChatFrom := func(from string) func(client.Event) bool {
		return func(e client.Event) bool { return e.Type == client.EventChat && e.From == from }
	}
	for i := range 10 {
		alice.Send(fmt.Sprintf("a%d", i))
		bob.Send(fmt.Sprintf("b%d", i))
	}
	waitFor(t, 5*time.Second, "first messages", func() bool { return kb.count(isChatFrom("alice")) == 10 })
	if err := bob.Rebind(); err != nil {
		t.Fatal(err)
	}
	// Alice talks while bob moves; bob talks too.
	for i := 10; i < 20; i++ {
		alice.Send(fmt.Sprintf("a%d", i))
		bob.Send(fmt.Sprintf("b%d", i))
	}
	waitFor(t, 5*time.Second, "bob's resume", func() bool {
		return kb.count(func(e client.Event) bool { return e.Type == client.EventResumed }) == 1
	})
	waitFor(t, 5*time.Second, "all messages at bob", func() bool { return kb.count(isChatFrom("alice")) == 20 && kb.count(isChatFrom("bob")) == 20 })
	waitFor(t, 5*time.Second, "all messages at alice", func() bool { return ka.count(isChatFrom("bob")) == 20 })
	for _, e := range ka.events() {
		if (e.Type == client.EventLeave || e.Type == client.EventJoin || e.Type == client.EventTimeout) && e.From == "bob" && e.Seq > 2 {
			t.Errorf("alice saw %+v", e)
		}
	}
	prev := uint64(0)
	for _, e := range kb.events() {
		if e.Seq != 0 {
			if e.Seq <= prev {
				t.Errorf("bob: seq %d after %d", e.Seq, prev)
			}
			prev = e.Seq
		}
	}
	if st := bob.Stats(); st.Resumes != 1 {
		t.Errorf("bob stats %+v", st)
	}
}

// The relay restarts: clients are told, log in again by themselves when it
// is back, say that history before the restart is lost, and chat on.
func TestRestart(t *testing.T) {
	r1 := relaytest.Start(t)
	lp := relaytest.NewLossyProxy(t, r1.Addr, relaytest.LossConfig{Seed: 1})
	addr := lp.Addr().String()
	alice := dial(t, addr, "alice", 1)
	ka := collect(alice)
	bob := dial(t, addr, "bob", 2)
	kb := collect(bob)
	bob.Send("before")
	waitFor(t, 5*time.Second, "bob's message", func() bool {
		return ka.count(func(e client.Event) bool { return e.Type == client.EventChat && e.Text == "before" }) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := r1.Server.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	for _, k := range []*collector{ka, kb} {
		waitFor(t, 5*time.Second, "restarting", func() bool {
			return k.count(func(e client.Event) bool { return e.Type == client.EventRestarting }) == 1
		})
	}
	bob.Send("during") // queued until bob is back
	time.Sleep(300 * time.Millisecond)
	r2 := relaytest.Start(t)
	lp.SetTarget(r2.Addr)
	for _, k := range []*collector{ka, kb} {
		waitFor(t, 10*time.Second, "restarted", func() bool {
			return k.count(func(e client.Event) bool { return e.Type == client.EventRestarted }) == 1
		})
	}
	bob.Send("after")
	for _, text := range []string{"during", "after"} {
		waitFor(t, 5*time.Second, text+" at alice", func() bool {
			return ka.count(func(e client.Event) bool { return e.Type == client.EventChat && e.Text == text && e.From == "bob" }) == 1
		})
	}
	if st := bob.Stats(); st.Relogins != 1 {
		t.Errorf("bob: %+v", st)
	}
}
