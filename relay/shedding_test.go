//go:build linux

package relay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// With every worker stuck, the relay sheds the newest datagrams (counted),
// and both the listener and the admin socket keep answering.
func TestSaturatedRelayShedsNewestAndStaysResponsive(t *testing.T) {
	rec := newRecorder()
	exec := &gateExec{release: make(chan struct{})}
	t.Cleanup(func() { exec.wg.Wait() }) // runs last: after the relay stopped
	r := relaytest.Start(t, func(c *relay.Config) {
		c.Observer = rec
		c.Executor = exec
		c.Workers = 2
		c.QueueLimit = 16
		c.SenderQueueLimit = 8
		relay.HandOffAlways(c) // every datagram waits for a gated worker
	})
	t.Cleanup(exec.open) // runs first, even if the test fails while gated
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
