package relay_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

func TestChatReachesOthersNeverTheSender(t *testing.T) {
	r := relaytest.Start(t)
	alice := dial(t, r).login("alice")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")
	carol := dial(t, r).login("carol")
	alice.expect("carol joined the chat room")
	bob.expect("carol joined the chat room")

	text := "hello  world\twith TAB, 中文 and ünïcode "
	alice.send("C alice " + text)
	bob.expect("alice says: " + text)
	carol.expect("alice says: " + text)
	alice.sync("alice") // no echo of her own chat reached her first
	bob.sync("bob")     // bob did not get his own join notice either
	carol.sync("carol")
}

func TestNcStyleNewlines(t *testing.T) {
	r := relaytest.Start(t)
	alice := dial(t, r)
	alice.send("L alice\n")
	alice.expect("OK")
	bob := dial(t, r)
	bob.send("L bob\r\n")
	bob.expect("OK")
	alice.expect("bob joined the chat room")
	alice.send("C alice hi bob\n")
	bob.expect("alice says: hi bob")
	bob.send("C bob hi alice\r\n")
	alice.expect("bob says: hi alice")
}

func TestLoginReplies(t *testing.T) {
	rec := newRecorder()
	r := relaytest.Start(t, func(c *relay.Config) { c.Observer = rec })
	alice := dial(t, r).login("alice")

	tests := []struct {
		name, send, want, result string
	}{
		{"taken same case", "L alice", "name taken", relay.LoginTaken},
		{"taken upper case", "L ALICE", "name taken", relay.LoginTaken},
		{"taken full width", "L Ａｌｉｃｅ", "name taken", relay.LoginTaken},
		{"reserved admin", "L admin", "name reserved", relay.LoginReserved},
		{"reserved any case", "L AdMiNiStRaToR", "name reserved", relay.LoginReserved},
		{"reserved chinese", "L 管理员", "name reserved", relay.LoginReserved},
		{"reserved system", "L System", "name reserved", relay.LoginReserved},
		{"reserved server", "L server", "name reserved", relay.LoginReserved},
		{"empty L", "L", "invalid name: use 1-32 letters or digits, no spaces", relay.LoginInvalid},
		{"empty name", "L ", "invalid name: use 1-32 letters or digits, no spaces", relay.LoginInvalid},
		{"bare newline name", "L \n", "invalid name: use 1-32 letters or digits, no spaces", relay.LoginInvalid},
		{"space in name", "L bob smith", "invalid name: use 1-32 letters or digits, no spaces", relay.LoginInvalid},
		{"ideographic space", "L bob\u3000smith", "invalid name: use 1-32 letters or digits, no spaces", relay.LoginInvalid},
		{"33 code points", "L " + strings.Repeat("名", 33), "invalid name: use 1-32 letters or digits, no spaces", relay.LoginInvalid},
		{"control char", "L bob\x1b[31m", "invalid name: use 1-32 letters or digits, no spaces", relay.LoginInvalid},
	}
	// Every member's socket stays open until the whole test ends: a closed
	// port could be handed to a later dial, which would then find it
	// logged in under another name.
	parent := t
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alice := alice.in(t)
			before := rec.login(tt.result)
			c := dial(parent, r).in(t)
			c.send(tt.send)
			got := c.recv()
			if got != tt.want {
				t.Fatalf("reply %q, want %q", got, tt.want)
			}
			if got == wire.ReplyOK || len(got) > wire.MaxReasonBytes {
				t.Fatalf("reason %q is OK or longer than %d bytes", got, wire.MaxReasonBytes)
			}
			eventually(t, "login counted as "+tt.result, func() bool { return rec.login(tt.result) == before+1 })
			// The client may try again with another name.
			c.login("retry" + strings.ReplaceAll(tt.name, " ", ""))
			alice.expect("retry" + strings.ReplaceAll(tt.name, " ", "") + " joined the chat room")
		})
	}

	t.Run("32 code points is fine", func(t *testing.T) {
		alice := alice.in(t)
		name := strings.Repeat("名", 32)
		dial(parent, r).in(t).login(name)
		alice.expect(name + " joined the chat room")
	})

	t.Run("repeated login answers OK without a second join notice", func(t *testing.T) {
		alice := alice.in(t)
		bob := dial(parent, r).in(t).login("bob")
		alice.expect("bob joined the chat room")
		bob.login("bob")
		bob.login("BOB") // same compare key: still a retransmission
		alice.sync("alice")
		if rec.login(relay.LoginRepeat) < 2 {
			t.Fatalf("repeats counted %d, want >= 2", rec.login(relay.LoginRepeat))
		}
	})

	t.Run("another name from a logged-in address is refused", func(t *testing.T) {
		alice := alice.in(t)
		dave := dial(parent, r).in(t).login("dave")
		alice.expect("dave joined the chat room")
		dave.send("L notdave")
		dave.expect("already logged in under another name")
		dave.sync("dave")
	})
}

func TestLoginFull(t *testing.T) {
	t.Run("max members", func(t *testing.T) {
		r := relaytest.Start(t, func(c *relay.Config) { c.MaxMembers = 2 })
		dial(t, r).login("a")
		dial(t, r).login("b")
		c := dial(t, r)
		c.send("L c")
		c.expect("full")
	})
	t.Run("per IP, loopback counted", func(t *testing.T) {
		r := relaytest.Start(t, func(c *relay.Config) { c.MaxPerIP = 2; c.LimitLoopbackPerIP = true })
		dial(t, r).login("a")
		dial(t, r).login("b")
		c := dial(t, r)
		c.send("L c")
		c.expect("full")
	})
	t.Run("per IP, loopback exempt by default", func(t *testing.T) {
		r := relaytest.Start(t, func(c *relay.Config) { c.MaxPerIP = 1 })
		dial(t, r).login("a")
		dial(t, r).login("b")
	})
}

func TestQuit(t *testing.T) {
	clock := newClock()
	r := relaytest.Start(t, func(c *relay.Config) { c.Now = clock.Now })
	alice := dial(t, r).login("alice")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")

	bob.send("Q bob")
	bob.expect("EXIT")
	alice.expect("bob left the chat room")
	eventually(t, "bob removed", func() bool { return r.Server.Registry().Len() == 1 })

	// The EXIT may be lost: a repeated Q within 30 s is answered again,
	// and nobody sees a second leave notice.
	clock.Advance(29e9)
	bob.send("Q bob")
	bob.expect("EXIT")
	alice.sync("alice")

	// After 30 s the address is a stranger again: no reply to it.
	clock.Advance(2e9)
	bob.send("Q bob")
	bob.login("bob") // the next datagram bob gets is his new login's OK
	alice.expect("bob joined the chat room")
}

func TestImpersonationFails(t *testing.T) {
	rec := newRecorder()
	r := relaytest.Start(t, func(c *relay.Config) { c.Observer = rec })
	alice := dial(t, r).login("alice")
	mallory := dial(t, r).login("mallory")
	alice.expect("mallory joined the chat room")

	mallory.send("C alice I owe mallory money")
	mallory.send("C ALICE me too")
	mallory.send("Q alice")
	eventually(t, "impersonations counted", func() bool { return rec.drop(relay.DropImpersonate) == 3 })
	alice.sync("alice") // alice saw no fake chat and was not made to quit

	stranger := dial(t, r)
	stranger.send("C alice hello")
	stranger.send("Q alice")
	eventually(t, "strangers counted", func() bool { return rec.drop(relay.DropNotLoggedIn) == 2 })
	if r.Server.Registry().ByName("alice") == nil {
		t.Fatal("alice was removed by someone else's Q")
	}
	alice.send("C alice still here")
	mallory.expect("alice says: still here")
	stranger.login("stranger") // its first reply is this OK: nothing was answered before
}

func TestControlCharactersRefused(t *testing.T) {
	rec := newRecorder()
	r := relaytest.Start(t, func(c *relay.Config) { c.Observer = rec })
	alice := dial(t, r).login("alice")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")

	bad := []string{
		"red \x1b[31mtext",         // ESC: terminal escape
		"line\rAdmin notice: lies", // CR: overwrite the line
		"two\nlines",               // LF inside the text
		"nul\x00byte",
		"del\x7f",
		"c1 \u0085 next line",
		"\u202eevil bidi override",
		"isolate \u2066x\u2069",
		"separator \u2028 line",
	}
	for i, text := range bad {
		bob.send("C bob " + text)
		bob.expect("message not sent: control characters are not allowed")
		eventually(t, "control drop counted", func() bool { return rec.drop(relay.DropControlChars) == i+1 })
	}
	alice.sync("alice") // none of them reached alice
	bob.send("C bob fine\ttab")
	alice.expect("bob says: fine\ttab")
}

func TestGarbageDroppedCountedNeverAnswered(t *testing.T) {
	rec := newRecorder()
	r := relaytest.Start(t, func(c *relay.Config) { c.Observer = rec })
	alice := dial(t, r).login("alice")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")

	garbage := []struct{ data, reason string }{
		{"", relay.DropEmpty},
		{"\n", relay.DropEmpty},
		{"\r\n", relay.DropEmpty},
		{"X hello", relay.DropUnknownVerb},
		{"LOGIN alice", relay.DropUnknownVerb},
		{"l alice", relay.DropUnknownVerb},
		{"Calice hi", relay.DropUnknownVerb},
		{"\xff\xfe\xfd", relay.DropBadUTF8},
		{"L \xc3\x28", relay.DropBadUTF8},
		{"C alice", relay.DropMalformed},
		{"C alice ", relay.DropMalformed},
		{"C", relay.DropMalformed},
		{"Q", relay.DropMalformed},
		{"Q ", relay.DropMalformed},
		{"CR2\n[\"alice\",\"hi\"]\n", relay.DropMalformed}, // a chat row (v2 revision 3) goes only from the relay to clients
		{"CR2\n{\"t\":\"ctx\",\"room\":\"main\",\"seq\":1,\"epoch\":\"e\"}\n[\"alice\",\"hi\",1]\n", relay.DropMalformed},
		{strings.Repeat("x", wire.DefaultMaxDatagram+1), relay.DropOversize},
		{"L " + strings.Repeat("y", 60000), relay.DropOversize},
	}
	g := dial(t, r)
	want := map[string]int{}
	for _, tt := range garbage {
		g.send(tt.data)
		want[tt.reason]++
		// The members keep chatting between every piece of garbage.
		alice.send("C alice still chatting")
		bob.expect("alice says: still chatting")
	}
	for reason, n := range want {
		eventually(t, reason+" drops counted", func() bool { return rec.drop(reason) == n })
	}
	// Nothing was answered: the garbage sender's first datagram back is
	// the reply to its first real request.
	g.send("L admin")
	g.expect("name reserved")
	alice.sync("alice")
	bob.sync("bob")
}

func TestChineseWording(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) { c.Lang = wire.LangZH })
	alice := dial(t, r).login("小明")
	bob := dial(t, r).login("小红")
	alice.expect("小红 进入聊天室")
	bob.send("C 小红 你好")
	alice.expect("小红 说: 你好")
	if _, final := admin(t, r, "notice 下课了"); final != "ok" {
		t.Fatalf("notice: %s", final)
	}
	alice.expect("管理员消息: 下课了")
	bob.expect("管理员消息: 下课了")
	bob.send("Q 小红")
	bob.expect("EXIT")
	alice.expect("小红 退出了聊天室")
	c := dial(t, r)
	c.send("L 小明")
	c.expect("用户名已被占用")
}

func TestHandlerPanicRecovered(t *testing.T) {
	rec := newRecorder()
	boom := true
	rec.onChat = func() {
		if boom {
			boom = false // only the first chat panics; handlers run one at a time here
			panic("boom")
		}
	}
	r := relaytest.Start(t, func(c *relay.Config) { c.Observer = rec; c.Workers = 1 })
	alice := dial(t, r).login("alice")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")
	alice.send("C alice first") // panics after fan-out, before counting
	bob.expect("alice says: first")
	eventually(t, "panic counted", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return rec.panics == 1 })
	alice.send("C alice second")
	bob.expect("alice says: second")
}

// A classic client takes the first datagram after its login as the login
// reply. While the room is busy, nothing may reach a new member before its
// OK: not a chat, not someone else's join notice.
func TestLoginReplyComesFirstInABusyRoom(t *testing.T) {
	r := relaytest.Start(t)
	talker := dial(t, r).login("talker")
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for i := 0; i < 20000; i++ { // bounded; stops early when the logins are done
			select {
			case <-done:
				return
			default:
			}
			talker.conn.Write([]byte("C talker busy"))
			if i%10 == 9 {
				// Pace it (about 10,000/s): this test is about ordering, not
				// overload, and a flood would make the kernel drop logins.
				time.Sleep(time.Millisecond)
			}
		}
	}()
	defer func() { close(done); <-stopped }()
	for i := 0; i < 60; i++ {
		c := dial(t, r)
		c.send("L newcomer" + strconv.Itoa(i))
		if got := c.recv(); got != "OK" {
			t.Fatalf("newcomer%d: first datagram %q, want OK", i, got)
		}
	}
}

// A member whose client vanished (socket closed, port gone) must not
// disturb the others: sends to it fail or vanish, and the room goes on.
func TestVanishedMemberDoesNotDisturbOthers(t *testing.T) {
	rec := newRecorder()
	r := relaytest.Start(t, func(c *relay.Config) { c.Observer = rec })
	alice := dial(t, r).login("alice")
	ghost := dial(t, r).login("ghost")
	alice.expect("ghost joined the chat room")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")
	ghost.conn.Close()
	for i := 0; i < 50; i++ {
		msg := "message " + strconv.Itoa(i)
		alice.send("C alice " + msg)
		bob.expect("alice says: " + msg)
		bob.send("C bob re " + msg)
		alice.expect("bob says: re " + msg)
	}
}
