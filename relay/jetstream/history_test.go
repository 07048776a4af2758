package jetstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/jetstream"
	"github.com/chatrelay/chatrelay/relay/relaytest"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// A relay on JetStream logs answers history from its streams, as far back
// as --history, and reports what is beyond it as lost: nothing in the
// logs knows of history requests (RoomLog.Range serves them). Cache 1:
// the older events come from the stream itself.
func TestHistoryFromTheStream(t *testing.T) {
	logs := newLogs(t, start(t, t.TempDir()), jetstream.LogOptions{History: 48, Cache: 1, Local: relay.NewMemoryLogs(64)})
	r := relaytest.Start(t, func(c *relay.Config) { c.Logs = logs })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func(name string) *client.Client {
		c, err := client.Dial(ctx, client.Config{Addr: r.Addr.String(), Name: name, Window: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer ccancel()
			c.Close(cctx)
		})
		go func() {
			for range c.Events() {
			}
		}()
		return c
	}
	bob := dial("bob")
	for i := 1; i <= 60; i++ {
		bob.Send(fmt.Sprintf("line %d", i))
	}
	if err := bob.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	alice := dial("alice") // 1 bob's join, 2..61 his lines, 62 alice's join: the stream keeps 15..62

	var got []client.Event
	before := uint64(62)
	for {
		h, err := alice.FetchHistory(ctx, wire.RoomMain, before, 20)
		if err != nil {
			t.Fatal(err)
		}
		got = append(h.Events, got...)
		if !h.More {
			if h.Lost != 14 {
				t.Fatalf("last page %+v, want lost 14", h)
			}
			break
		}
		before = h.Events[0].Seq
	}
	if len(got) != 47 {
		t.Fatalf("%d events, want 47 (15..61)", len(got))
	}
	for i, e := range got {
		if seq := uint64(15 + i); e.Seq != seq || e.Text != fmt.Sprintf("line %d", seq-1) || !e.History {
			t.Fatalf("event %d: %+v, want line %d at seq %d", i, e, seq-1, seq)
		}
	}
}
