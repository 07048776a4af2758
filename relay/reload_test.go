package relay_test

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// TestReconfigureKeepsMembers changes the language and the room size of a
// running relay: nobody is dropped, the next texts are in the new
// language, and a login beyond the new limit is refused.
func TestReconfigureKeepsMembers(t *testing.T) {
	r := relaytest.Start(t)
	alice := dial(t, r).login("alice")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")
	carol := dial(t, r).login("carol")
	alice.expect("carol joined the chat room")
	bob.expect("carol joined the chat room")

	l := r.Server.Live()
	if l.Lang != wire.LangEN || l.MaxMembers != 10000 {
		t.Fatalf("initial live settings %+v", l)
	}
	l.Lang = wire.LangZH
	l.MaxMembers = 3
	if err := r.Server.Reconfigure(l); err != nil {
		t.Fatal(err)
	}
	if got := r.Server.Live(); got.Lang != wire.LangZH || got.MaxMembers != 3 {
		t.Fatalf("Live after Reconfigure: %+v", got)
	}

	if n, err := r.Server.Notice("五分钟后下课"); err != nil || n != 3 {
		t.Fatalf("notice: %d members, %v", n, err)
	}
	for _, c := range []*client{alice, bob, carol} {
		c.expect("管理员消息: 五分钟后下课")
	}
	dave := dial(t, r)
	dave.send("L dave")
	dave.expect("聊天室已满")
	alice.send("C alice 大家好")
	bob.expect("alice 说: 大家好")
	carol.expect("alice 说: 大家好")
	if n := r.Server.Registry().Len(); n != 3 {
		t.Fatalf("%d members after reconfiguring, want 3", n)
	}

	// Lowering the limit below the count removes nobody; raising it
	// admits again.
	l.MaxMembers = 1
	if err := r.Server.Reconfigure(l); err != nil {
		t.Fatal(err)
	}
	bob.sync("bob") // a repeated login of a member is not a new one
	if n := r.Server.Registry().Len(); n != 3 {
		t.Fatalf("%d members after lowering the limit to 1, want 3", n)
	}
	l.MaxMembers, l.Lang = 4, wire.LangEN
	if err := r.Server.Reconfigure(l); err != nil {
		t.Fatal(err)
	}
	dave.login("dave")
	alice.expect("dave joined the chat room")
}

func TestReconfigureRejectsBadSettings(t *testing.T) {
	r := relaytest.Start(t)
	alice := dial(t, r).login("alice")
	good := r.Server.Live()
	tests := []struct {
		name   string
		change func(*relay.Live)
	}{
		{"no members", func(l *relay.Live) { l.MaxMembers = 0 }},
		{"zero per ip", func(l *relay.Live) { l.MaxPerIP = 0 }},
		{"unknown language", func(l *relay.Live) { l.Lang = "fr" }},
		{"no timeout", func(l *relay.Live) { l.V2Timeout = 0 }},
		{"negative idle", func(l *relay.Live) { l.ClassicIdle = -time.Second }},
		{"negative flood rate", func(l *relay.Live) { l.Flood.ChatRate = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := good
			l.Lang = wire.LangZH // would show if anything were applied
			l.MaxMembers = 1
			tt.change(&l)
			if err := r.Server.Reconfigure(l); err == nil {
				t.Fatalf("Reconfigure(%+v) accepted", l)
			}
			if got := r.Server.Live(); got.Lang != good.Lang || got.MaxMembers != good.MaxMembers {
				t.Fatalf("a refused Reconfigure changed the settings: %+v", got)
			}
		})
	}
	bob := dial(t, r).login("bob") // the room is not limited to 1
	alice.expect("bob joined the chat room")
	bob.sync("bob")
}

func TestReconfigureBeforeServe(t *testing.T) {
	srv, err := relay.New(relay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reconfigure(srv.Live()); !errors.Is(err, relay.ErrNotServing) {
		t.Fatalf("Reconfigure before Serve: %v, want ErrNotServing", err)
	}
}

// TestReconfigureIdleLimitLive shortens --classic-idle on a running relay:
// the idle member is evicted by the next sweeps, without a restart.
func TestReconfigureIdleLimitLive(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) { c.SweepEvery = 20 * time.Millisecond })
	alice := dial(t, r).login("alice")
	l := r.Server.Live()
	l.ClassicIdle = 100 * time.Millisecond
	if err := r.Server.Reconfigure(l); err != nil {
		t.Fatal(err)
	}
	alice.expect("Admin notice: you were disconnected after being idle too long")
	alice.expect("EXIT")
	eventually(t, "alice evicted", func() bool { return r.Server.Registry().Len() == 0 })
}

// TestReconfigureWhileChatting switches the language back and forth while
// a member chats: every chat arrives, each worded wholly in one language.
// Under -race this also proves the live settings are published safely.
func TestReconfigureWhileChatting(t *testing.T) {
	r := relaytest.Start(t)
	alice := dial(t, r).login("alice")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")

	const chats = 200
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l := r.Server.Live()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			l.Lang = [2]wire.Lang{wire.LangEN, wire.LangZH}[i%2]
			l.MaxMembers = 10 + i%2
			if err := r.Server.Reconfigure(l); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	langs := map[string]int{}
	for i := 0; i < chats; i++ {
		text := "m" + strconv.Itoa(i)
		alice.send("C alice " + text)
		switch got := bob.recv(); got {
		case "alice says: " + text:
			langs["en"]++
		case "alice 说: " + text:
			langs["zh"]++
		default:
			close(done)
			wg.Wait()
			t.Fatalf("chat %d arrived as %q", i, got)
		}
	}
	close(done)
	wg.Wait()
	if n := r.Server.Registry().Len(); n != 2 {
		t.Fatalf("%d members, want 2", n)
	}
	t.Logf("worded en %d, zh %d", langs["en"], langs["zh"])
	// Once the switching stops, the last setting holds.
	l := r.Server.Live()
	l.Lang = wire.LangZH
	if err := r.Server.Reconfigure(l); err != nil {
		t.Fatal(err)
	}
	alice.send("C alice 最后")
	bob.expect("alice 说: 最后")
}
