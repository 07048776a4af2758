//go:build linux

package relay_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

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
