package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/client"
)

// dialV2 logs a v2 member in through the client library, as chatcli does.
func dialV2(t *testing.T, d *daemon, name string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Addr: d.l.UDP.String(), Name: name, Rand: rand.New(rand.NewPCG(uint64(len(name)), 1))})
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	t.Cleanup(func() { closeV2(c) })
	return c
}

func closeV2(c *client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.Close(ctx)
}

// chatsSeen reads c's events until it has seen a chat with each of texts
// (history or not, as history says), and returns them by text.
func chatsSeen(t *testing.T, c *client.Client, history bool, texts ...string) map[string]client.Event {
	t.Helper()
	seen := map[string]client.Event{}
	want := map[string]bool{}
	for _, s := range texts {
		want[s] = true
	}
	deadline := time.After(10 * time.Second)
	for len(seen) < len(want) {
		select {
		case e, ok := <-c.Events():
			if !ok {
				t.Fatalf("%s's session ended; chats seen: %v", c.Name(), seen)
			}
			if e.Type == client.EventChat && e.History == history && want[e.Text] {
				seen[e.Text] = e
			}
		case <-deadline:
			t.Fatalf("%s saw only %v of the chats %q (history %v)", c.Name(), seen, texts, history)
		}
	}
	return seen
}

// With --data-dir a room's history survives a restart: a member who logs
// in afterwards gets the chats from before it as backlog, under the same
// epoch, and the room's sequence goes on.
func TestDataDirHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.DataDir = dir
	d := startDaemon(t, o)

	alice := dialV2(t, d, "alice")
	carol := d.join(t, "carol") // classic
	carol.send("C carol hello from classic")
	if _, err := alice.Send("hello from v2"); err != nil {
		t.Fatal(err)
	}
	before := chatsSeen(t, alice, false, "hello from classic", "hello from v2")
	epoch := before["hello from v2"].Epoch
	lastSeq := max(before["hello from v2"].Seq, before["hello from classic"].Seq)
	if epoch == "" || before["hello from classic"].Epoch != epoch {
		t.Fatalf("chats before the restart: %+v", before)
	}
	closeV2(alice)
	carol.send("Q carol")
	d.stop(t)

	o2 := testOptions(t)
	o2.DataDir = dir
	d2 := startDaemon(t, o2)
	dave := dialV2(t, d2, "dave")
	backlog := chatsSeen(t, dave, true, "hello from classic", "hello from v2")
	for text, e := range backlog {
		if e.Epoch != epoch || e.Seq != before[text].Seq {
			t.Errorf("after the restart %q is seq %d of epoch %q; before it was seq %d of epoch %q", text, e.Seq, e.Epoch, before[text].Seq, epoch)
		}
	}
	if _, err := dave.Send("after the restart"); err != nil {
		t.Fatal(err)
	}
	after := chatsSeen(t, dave, false, "after the restart")["after the restart"]
	if after.Epoch != epoch || after.Seq <= lastSeq {
		t.Fatalf("the first chat after the restart is seq %d of epoch %q; before: up to seq %d of epoch %q", after.Seq, after.Epoch, lastSeq, epoch)
	}
	// Names die with their sessions: alice may log in again.
	dialV2(t, d2, "alice")
}

// Without --data-dir nothing is stored: a restart starts a new epoch with
// no history, as before.
func TestNoDataDirNoHistory(t *testing.T) {
	d := startDaemon(t, testOptions(t))
	alice := dialV2(t, d, "alice")
	if _, err := alice.Send("gone after a restart"); err != nil {
		t.Fatal(err)
	}
	epoch := chatsSeen(t, alice, false, "gone after a restart")["gone after a restart"].Epoch
	closeV2(alice)
	d.stop(t)

	d2 := startDaemon(t, testOptions(t))
	bob := dialV2(t, d2, "bob")
	if _, err := bob.Send("new"); err != nil {
		t.Fatal(err)
	}
	e := chatsSeen(t, bob, false, "new")["new"]
	if e.Epoch == epoch {
		t.Fatalf("a relay without --data-dir kept epoch %q across a restart", epoch)
	}
}

// A relay with --data-dir killed with SIGKILL right after it acknowledged
// chats (a v2 chat's echo comes after its store) has all of them after a
// restart, with their seqs, and gives the next chat a later seq: no seq
// goes to two events.
func TestDataDirKilledKeepsSeqs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs real relay processes")
	}
	dir := t.TempDir()
	proc, addr := startRelayProc(t, "relay", "--data-dir", dir)
	dial := func(addr netip.AddrPort, name string) *client.Client {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, client.Config{Addr: addr.String(), Name: name, Rand: rand.New(rand.NewPCG(uint64(len(name)), 2))})
		if err != nil {
			t.Fatalf("dial %s: %v", name, err)
		}
		t.Cleanup(func() { closeV2(c) })
		return c
	}
	alice := dial(addr, "alice")
	var texts []string
	for i := range 30 {
		text := fmt.Sprintf("chat %d", i)
		if _, err := alice.Send(text); err != nil {
			t.Fatal(err)
		}
		texts = append(texts, text)
	}
	acked := chatsSeen(t, alice, false, texts...)
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	proc.Wait()

	_, addr2 := startRelayProc(t, "restarted", "--data-dir", dir, "--backlog", "50")
	bob := dial(addr2, "bob")
	backlog := chatsSeen(t, bob, true, texts...)
	var last uint64
	for text, e := range backlog {
		if a := acked[text]; e.Seq != a.Seq || e.Epoch != a.Epoch {
			t.Errorf("after the kill %q is seq %d of epoch %q; acknowledged as seq %d of epoch %q", text, e.Seq, e.Epoch, a.Seq, a.Epoch)
		}
		last = max(last, e.Seq)
	}
	if _, err := bob.Send("after the kill"); err != nil {
		t.Fatal(err)
	}
	// After the last chat come the room's notices (bob's join...).
	if e := chatsSeen(t, bob, false, "after the kill")["after the kill"]; e.Seq <= last {
		t.Fatalf("the first chat after the kill is seq %d; the last before it was %d", e.Seq, last)
	}
}
