package relay_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// gate is a recorder whose Delivered blocks the first caller after arm
// until open: it holds the relay's sender in the middle of a round, so
// that the test knows exactly which events queue behind it.
type gate struct {
	*recorder
	mu      sync.Mutex
	armed   bool
	sent    int // datagrams and events handed to the kernel, as counted
	events  int
	reached chan struct{}
	release chan struct{}
}

func newGate() *gate {
	return &gate{recorder: newRecorder(), reached: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) arm() { g.mu.Lock(); g.armed = true; g.mu.Unlock() }

// open lets the held sender go on (once).
func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.release:
	default:
		close(g.release)
	}
}

// held returns once the armed sender is held.
func (g *gate) held(t *testing.T) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the first chat was never sent")
	}
}

func (g *gate) EventsDelivered(n int) { g.mu.Lock(); g.events += n; g.mu.Unlock() }

func (g *gate) counts() (datagrams, events int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sent, g.events
}

func (g *gate) Delivered(n int) {
	g.mu.Lock()
	g.sent += n
	hold := g.armed
	g.armed = false
	g.mu.Unlock()
	if hold {
		close(g.reached)
		<-g.release
	}
}

func (g *gate) chats() int {
	g.recorder.mu.Lock()
	defer g.recorder.mu.Unlock()
	return g.kinds[relay.KindChat]
}

// Events that queue while the relay is sending leave together: a v2 member
// gets them packed into datagrams of at most the send budget, in seq order
// with no gap, while a classic member still gets one line per datagram.
func TestPendingEventsAreCoalescedForV2(t *testing.T) {
	for _, tc := range []struct {
		name      string
		chats     int
		textLen   int
		loopback  int // Config.LoopbackSendBudget (the test's members are on loopback)
		budget    int // the largest datagram that may come
		datagrams int // exactly this many, 0: more than one, as the budget requires
	}{
		{"fit in one datagram", 10, 2, -1, 1200, 1},
		{"split at the budget", 40, 100, -1, 1200, 0},
		{"larger on loopback", 40, 100, 0, 8192, 1}, // 1,200 bytes took 7
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate()
			// One shard: the test holds its one sender.
			r := relaytest.Start(t, func(c *relay.Config) {
				c.Observer, c.Workers, c.FanoutShards, c.LoopbackSendBudget = g, 4, 1, tc.loopback
				relay.HandOffAlways(c) // the gate holds a worker, not the reader
			})
			t.Cleanup(g.open) // registered after Start's: runs first, so shutdown never waits on the gate
			budget := tc.budget

			rcv := dialV2(t, r)
			rcv.login("rcv")
			rcv.settle()
			classic := dial(t, r).login("classic")
			rcv.expectT(wire.FrameJoin)
			snd := dialV2(t, r)
			snd.login("snd")
			snd.settle()
			rcv.expectT(wire.FrameJoin)
			classic.expect("snd joined the chat room")

			// Hold the sender of a first chat inside its round, once the
			// joins' rounds (whose counts follow their sends) are over.
			relay.WaitFanoutIdle(r.Server)
			sent0, events0 := g.counts()
			g.arm()
			classic.send("C classic first")
			g.held(t)
			texts := make([]string, tc.chats)
			for i := range texts {
				texts[i] = fmt.Sprintf("%03d%s", i, strings.Repeat("x", tc.textLen))
				snd.sendFrames(&wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, ID: uint64(i + 1), Text: texts[i]})
			}
			// Each chat is counted when it is queued (the held one too),
			// which its handler does without waiting for the held sender.
			eventually(t, "chats queued", func() bool { return g.chats() == tc.chats+1 })
			g.open()

			first := rcv.expectT(wire.FrameChat)
			if first.From != "classic" || first.Text != "first" {
				t.Fatalf("first event %+v", first)
			}
			seq := first.Seq
			datagrams, packed := 0, 0
			for got := 0; got < tc.chats; {
				d := rcv.recv()
				datagrams++
				if len(d) > budget {
					t.Fatalf("datagram of %d bytes, budget %d", len(d), budget)
				}
				fs, err := wire.DecodeV2(nil, []byte(d))
				if err != nil {
					t.Fatal(err)
				}
				if len(fs) > 1 {
					packed++
				}
				for _, f := range fs {
					if f.T != wire.FrameChat || f.From != "snd" || f.Text != texts[got] || f.Seq != seq+1 {
						t.Fatalf("frame %+v, want chat %d from snd with seq %d", f, got, seq+1)
					}
					seq++
					got++
				}
			}
			switch {
			case tc.datagrams > 0 && datagrams != tc.datagrams:
				t.Fatalf("%d chats came in %d datagrams, want %d", tc.chats, datagrams, tc.datagrams)
			case tc.datagrams == 0 && (datagrams < 2 || packed == 0):
				t.Fatalf("%d chats came in %d datagrams (%d packed), want several, packed", tc.chats, datagrams, packed)
			}
			// Classic: one line per datagram, every one.
			for i := range texts {
				classic.expect("snd says: " + texts[i])
			}
			// The counters tell the packing apart: each chat is an event for
			// rcv, snd (its echo) and classic; snd and rcv got the same
			// datagrams. The first chat went to rcv and snd (not its sender).
			wantSent, wantEvents := 2+2*datagrams+tc.chats, 2+3*tc.chats
			eventually(t, "deliveries counted", func() bool {
				sent, events := g.counts()
				return sent-sent0 == wantSent && events-events0 == wantEvents
			})
		})
	}
}

// While one round of the fan-out is still being sent, the events that come
// meanwhile wait and leave together, packed, for the members of every
// shard, not only for those whose sender is still busy: chats handled one
// after another, each with a flush of its own, reach every v2 member in one
// datagram, and the classic member still line by line.
func TestEventsBehindARoundLeaveTogetherInEveryShard(t *testing.T) {
	g := newGate()
	r := relaytest.Start(t, func(c *relay.Config) {
		c.Observer, c.Workers, c.FanoutShards = g, 4, 4
		relay.HandOffAlways(c) // the gate holds a worker, not the reader
	})
	t.Cleanup(g.open) // registered after Start's: runs first, so shutdown never waits on the gate

	classic := dial(t, r).login("classic")
	classic.sync("classic")
	rcvs := make([]*v2c, 8) // on random ports: spread over the 4 shards
	for i := range rcvs {
		rcvs[i] = dialV2(t, r)
		rcvs[i].login(fmt.Sprintf("rcv%d", i))
		rcvs[i].settle()
	}
	snd := dialV2(t, r)
	snd.login("snd")
	snd.settle()
	relay.WaitFanoutIdle(r.Server)
	for i := range rcvs {
		classic.expect(fmt.Sprintf("rcv%d joined the chat room", i))
	}
	classic.expect("snd joined the chat room")
	for _, c := range rcvs { // the joins after each one's own, snd's last
		for f := c.next(); f.T != wire.FrameJoin || f.From != "snd"; f = c.next() {
		}
	}

	g.arm()
	classic.send("C classic first")
	g.held(t)
	const chats = 10
	for i := range chats {
		snd.sendFrames(&wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, ID: uint64(i + 1), Text: fmt.Sprintf("chat %d", i)})
		// Handled, broadcast and flushed before the next is sent.
		eventually(t, "chat handled", func() bool { return g.chats() == i+2 })
	}
	g.open()

	for n, c := range rcvs {
		if f := c.expectT(wire.FrameChat); f.From != "classic" || f.Text != "first" {
			t.Fatalf("rcv%d: first event %+v", n, f)
		}
		fs, err := wire.DecodeV2(nil, []byte(c.recv()))
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != chats {
			t.Fatalf("rcv%d: a datagram of %d chats after the held round, want all %d", n, len(fs), chats)
		}
		for i, f := range fs {
			if f.T != wire.FrameChat || f.Text != fmt.Sprintf("chat %d", i) {
				t.Fatalf("rcv%d: frame %d is %+v", n, i, f)
			}
		}
	}
	for i := range chats {
		classic.expect(fmt.Sprintf("snd says: chat %d", i))
	}
}

// A round of classic lines in flight does not hold the next one back: with
// nothing to pack (one line per event and member), what is published while
// one shard's sender is stuck leaves at once for the members of the other
// shards, and the stuck shard's members get it after, in order.
func TestClassicRoundsDoNotWaitForASlowShard(t *testing.T) {
	g := newGate()
	r := relaytest.Start(t, func(c *relay.Config) {
		c.Observer, c.Workers, c.FanoutShards = g, 4, 4
		relay.HandOffAlways(c) // the gate holds a worker, not the reader
	})
	t.Cleanup(g.open) // registered after Start's: runs first, so shutdown never waits on the gate

	rcvs := make([]*client, 12) // on random ports: spread over the 4 shards
	for i := range rcvs {
		rcvs[i] = dial(t, r).login(fmt.Sprintf("rcv%d", i))
	}
	snd := dial(t, r).login("snd")
	relay.WaitFanoutIdle(r.Server)
	for i, c := range rcvs { // the later members' joins
		for j := i + 1; j < len(rcvs); j++ {
			c.expect(fmt.Sprintf("rcv%d joined the chat room", j))
		}
		c.expect("snd joined the chat room")
	}

	g.arm()
	snd.send("C snd one")
	g.held(t) // one shard's sender is stuck after its part of the first round
	snd.send("C snd two")
	got := make([][]string, len(rcvs))
	sawTwo := func() bool {
		for i, c := range rcvs {
			c.conn.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
			if n, err := c.conn.Read(c.buf); err == nil {
				got[i] = append(got[i], string(c.buf[:n]))
			}
		}
		for i := range got {
			if slices.Contains(got[i], "snd says: two") {
				return true
			}
		}
		return false
	}
	eventually(t, "the second chat reaching a member while a shard is stuck", sawTwo)
	g.open()
	for i, c := range rcvs {
		for len(got[i]) < 2 {
			got[i] = append(got[i], c.recv())
		}
		if want := []string{"snd says: one", "snd says: two"}; !slices.Equal(got[i], want) {
			t.Errorf("rcv%d got %q, want %q", i, got[i], want)
		}
	}
}

// sendCalls is a recorder that counts the fan-out's sends: one Delivered
// per system call's worth of datagrams handed to the kernel (a Batch's
// flush), and the datagrams.
type sendCalls struct {
	*recorder
	mu              sync.Mutex
	calls, datagram int
}

func (s *sendCalls) Delivered(n int) { s.mu.Lock(); s.calls++; s.datagram += n; s.mu.Unlock() }

func (s *sendCalls) reset() (calls, datagrams int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls, datagrams = s.calls, s.datagram
	s.calls, s.datagram = 0, 0
	return calls, datagrams
}

// A chat at a quiet relay leaves in one sendmmsg, not one per fan-out
// shard: with 32 shards on 8 sockets, a room of 20 gets it in one call
// (shard by shard it took 14 to 19; socket by socket up to 8), every
// member once.
func TestQuietChatLeavesInOneCall(t *testing.T) {
	obs := &sendCalls{recorder: newRecorder()}
	r := relaytest.Start(t, func(c *relay.Config) { c.Observer, c.FanoutShards = obs, 32 })
	members := make([]*client, 20) // on random ports: spread over the shards
	for i := range members {
		members[i] = dial(t, r).login(fmt.Sprintf("m%d", i))
	}
	for i, c := range members {
		for j := i + 1; j < len(members); j++ {
			c.expect(fmt.Sprintf("m%d joined the chat room", j))
		}
	}
	relay.WaitFanoutIdle(r.Server)
	obs.reset()

	for round := range 3 {
		time.Sleep(relay.QuietGap) // a quiet relay: nothing read for that long
		members[0].send(fmt.Sprintf("C m0 hello %d", round))
		for _, c := range members[1:] {
			c.expect(fmt.Sprintf("m0 says: hello %d", round))
		}
		relay.WaitFanoutIdle(r.Server)
		calls, datagrams := obs.reset()
		if datagrams != len(members)-1 || calls != 1 {
			t.Errorf("chat %d: %d datagrams in %d sends, want %d in one", round, datagrams, calls, len(members)-1)
		}
	}
}
