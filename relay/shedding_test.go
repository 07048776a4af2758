//go:build linux

package relay_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// startGated starts a relay with two workers whose tasks wait while
// exec.gating is set, every datagram handed to them (HandOffAlways), and
// a recorder; more sets the rest of its configuration.
func startGated(t *testing.T, more func(*relay.Config)) (*relaytest.Relay, *recorder, *gateExec) {
	t.Helper()
	rec := newRecorder()
	exec := &gateExec{release: make(chan struct{})}
	t.Cleanup(func() { exec.wg.Wait() }) // runs last: after the relay stopped
	r := relaytest.Start(t, func(c *relay.Config) {
		c.Observer = rec
		c.Executor = exec
		c.Workers = 2
		more(c)
		relay.HandOffAlways(c) // every datagram waits for a gated worker
	})
	t.Cleanup(exec.open) // runs first, even if the test fails while gated
	return r, rec, exec
}

// With every worker stuck, the relay sheds the newest datagrams (counted),
// and both the listener and the admin socket keep answering.
func TestSaturatedRelayShedsNewestAndStaysResponsive(t *testing.T) {
	r, rec, exec := startGated(t, func(c *relay.Config) {
		c.QueueLimit = 16
		c.SenderQueueLimit = 8
	})
	alice := dial(t, r).login("alice")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")
	// Gate only once no worker runs: one still looping would take the
	// flood's first datagrams and shed fewer.
	eventually(t, "the workers to be idle", func() bool { return r.Server.Running() == 0 })
	exec.gating.Store(true)

	// Flood from several senders: the first ones queue, the newest are shed.
	for i := 0; i < 10; i++ {
		c := dial(t, r)
		for j := 0; j < 50; j++ {
			c.send("L flooder" + strings.Repeat("x", j%3))
		}
	}
	// 16 fit in the queue (8 per sender); the 484 newest are shed, counted.
	eventually(t, "484 datagrams shed", func() bool {
		return rec.drop(relay.DropQueueFull)+rec.drop(relay.DropSenderQueue) == 500-16
	})
	// The admin socket answers while every worker is stuck.
	start := time.Now()
	lines, final := admin(t, r, "stats")
	if final != "ok" || time.Since(start) > 2*time.Second {
		t.Fatalf("stats: %q %v after %v", final, lines, time.Since(start))
	}
	if !strings.Contains(strings.Join(lines, "\n"), "queued 16") {
		t.Fatalf("stats while saturated:\n%s", strings.Join(lines, "\n"))
	}
	// Once the workers are free again, the members are served.
	exec.open()
	eventually(t, "the queue to drain", func() bool { return r.Server.Stats().Queued == 0 && r.Server.Running() == 0 })
	bob.send("C bob still here")
	for {
		got := alice.recv()
		if got == "bob says: still here" {
			break
		}
		if !strings.HasSuffix(got, " joined the chat room") { // the queued logins, served late
			t.Fatalf("alice got %q", got)
		}
	}
}

// TestDefaultQueueAbsorbsABurst: with the default limits, a burst of
// 32,768 chats (what the README promises) from four senders while every worker is stuck
// waits, none dropped, and every one of them is broadcast once the workers
// are free; only a datagram beyond the queue is shed (queue_full). The
// reader empties the kernel's buffer as fast as datagrams come, so this
// queue is what turns a burst into latency instead of loss.
func TestDefaultQueueAbsorbsABurst(t *testing.T) {
	const senders, burst = 4, 32768
	const perSender = burst / senders
	r, rec, exec := startGated(t, func(*relay.Config) {})
	var cs []*client
	var names []string
	for i := 0; i < senders; i++ {
		names = append(names, fmt.Sprintf("burst%d", i))
		cs = append(cs, dial(t, r).login(names[i]))
	}
	eventually(t, "the workers to be idle", func() bool { return r.Server.Running() == 0 })
	exec.gating.Store(true)

	// In slices, each waited for, so that the relay's own socket never
	// overflows: what is measured is the queue behind it.
	const slice = 1000
	for sent := 0; sent < perSender; sent += slice {
		for i, c := range cs {
			for j := sent; j < min(sent+slice, perSender); j++ {
				c.send(fmt.Sprintf("C %s %d", names[i], j))
			}
		}
		want := senders * min(sent+slice, perSender)
		eventually(t, fmt.Sprintf("%d chats queued", want), func() bool { return r.Server.Stats().Queued == int64(want) })
	}
	if d := rec.drop(relay.DropQueueFull) + rec.drop(relay.DropSenderQueue); d != 0 {
		t.Fatalf("%d chats of the burst dropped", d)
	}
	cs[0].send("C burst0 one too many")
	eventually(t, "the datagram beyond the queue shed", func() bool { return rec.drop(relay.DropQueueFull) == 1 })

	exec.open()
	eventually(t, "every chat of the burst broadcast", func() bool { return rec.kind(relay.KindChat) == burst })
	if d := rec.drop(relay.DropQueueFull) + rec.drop(relay.DropSenderQueue); d != 1 {
		t.Fatalf("%d dropped in all, want only the one beyond the queue", d)
	}
}

// holdSends is a recorder whose Delivered, called by whatever goroutine
// sent, waits while holding is set: the relay's sending stops.
type holdSends struct {
	*recorder
	holding atomic.Bool
	held    atomic.Int64 // sends waiting now
	release chan struct{}
}

func (h *holdSends) Delivered(int) {
	if h.holding.Load() {
		h.held.Add(1)
		<-h.release
		h.held.Add(-1)
	}
}

func (h *holdSends) open() {
	if h.holding.CompareAndSwap(true, false) {
		close(h.release)
	}
}

// TestOverloadedRelayLeavesTheBacklogInTheSocket: with rooms in memory the
// reader handles each read batch and pool tasks send the fan-out. While
// nothing can be sent, the fan-out fills, the reader waits for it, and the
// kernel drops what the relay's socket cannot hold; the admin socket
// answers meanwhile. Once sending goes on, every chat is either broadcast
// or counted as dropped at the socket (rcvbuf), none shed by a queue, and
// the member hears the sender again.
func TestOverloadedRelayLeavesTheBacklogInTheSocket(t *testing.T) {
	rec := &holdSends{recorder: newRecorder(), release: make(chan struct{})}
	r := relaytest.Start(t, func(c *relay.Config) { c.Observer = rec })
	t.Cleanup(rec.open) // runs first, even if the test fails while holding
	alice := dial(t, r).login("alice")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")
	relay.WaitFanoutIdle(r.Server)
	rec.holding.Store(true)

	const n = 50000
	port := int(r.Addr.Port())
	before, base := procUDP(t, port).drops, r.Server.Stats()
	// In bursts of 64 (sendmmsg), as many clients at once would send.
	pc := ipv4.NewPacketConn(bob.conn)
	ms := make([]ipv4.Message, 64)
	for i := 0; i < n; i += len(ms) {
		batch := ms[:min(len(ms), n-i)]
		for j := range batch {
			batch[j] = ipv4.Message{Buffers: [][]byte{fmt.Appendf(nil, "C bob %d", i+j)}}
		}
		for sent := 0; sent < len(batch); {
			k, err := pc.WriteBatch(batch[sent:], 0)
			if err != nil {
				t.Fatal(err)
			}
			sent += k
		}
	}
	eventually(t, "the kernel to drop at the relay's socket", func() bool { return procUDP(t, port).drops > before })
	if rec.held.Load() == 0 {
		t.Fatal("no send was held")
	}
	start := time.Now()
	if _, final := admin(t, r, "stats"); final != "ok" || time.Since(start) > 2*time.Second {
		t.Fatalf("stats while nothing can be sent: %q after %v", final, time.Since(start))
	}

	rec.open()
	// Everything the relay read is broadcast and sent (to alice, whose
	// own socket overflowed: she has some of the burst), and its socket
	// is empty.
	eventually(t, "the burst handled and sent", func() bool {
		st, chats := r.Server.Stats(), uint64(rec.kind(relay.KindChat))
		return procUDP(t, port).rxQueue == 0 && st.DatagramsReceived-base.DatagramsReceived == chats && st.Deliveries-base.Deliveries == chats
	})
	for { // alice reads what she has: everything was sent, so a pause means none is left
		alice.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := alice.conn.Read(alice.buf); err != nil {
			break
		}
	}
	bob.send("C bob still here")
	alice.expect("bob says: still here")
	// The socket's drop count comes with the next datagram it reads
	// (SO_RXQ_OVFL): the one above.
	eventually(t, "every chat broadcast or counted as dropped at the socket", func() bool {
		return rec.kind(relay.KindChat)+rec.drop(relay.DropRcvbuf) == n+1
	})
	if shed := rec.drop(relay.DropQueueFull) + rec.drop(relay.DropSenderQueue); shed != 0 || rec.drop(relay.DropRcvbuf) == 0 {
		t.Fatalf("%d shed by a queue, %d dropped at the socket: want none, and some", shed, rec.drop(relay.DropRcvbuf))
	}
}
