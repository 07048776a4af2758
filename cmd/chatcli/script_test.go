package main

import (
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chatrelay/chatrelay/relay/relaytest"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// Two script-mode clients converse through a real relay.
func TestScriptConversation(t *testing.T) {
	r := relaytest.Start(t)
	addr := r.Addr.String()

	alice := startClient(t, []string{"--name", "alice", addr}, nil)
	waitFor(t, 5*time.Second, "alice's login", func() bool { return r.Server.Stats().Members == 1 })
	bob := startClient(t, []string{addr}, nil) // no --name: the first line is the name
	bob.say(t, "bob")
	alice.waitStdout(t, "bob joined the chat room") // both are logged in

	alice.say(t, "hello 世界")
	bob.waitStdout(t, "alice says: hello 世界")
	bob.say(t, "")   // empty lines are not sent
	bob.say(t, "  ") // nor blank ones
	bob.say(t, "hi alice")
	alice.waitStdout(t, "bob says: hi alice")

	alice.in.Close() // end of input: alice leaves
	if code := alice.wait(t, 5*time.Second); code != 0 {
		t.Errorf("alice exit %d, want 0; stderr: %s", code, alice.stderr.String())
	}
	bob.waitStdout(t, "alice left the chat room")
	bob.in.Close()
	if code := bob.wait(t, 5*time.Second); code != 0 {
		t.Errorf("bob exit %d, want 0; stderr: %s", code, bob.stderr.String())
	}
	for _, line := range strings.Split(bob.stdout.String(), "\n") {
		if strings.HasPrefix(line, "bob says:") || line == "OK" || line == "EXIT" {
			t.Errorf("bob's stdout has %q", line)
		}
	}
	if s := alice.stderr.String() + bob.stderr.String(); s != "" {
		t.Errorf("unexpected stderr: %s", s)
	}
}

// A line longer than one datagram arrives whole, as several messages cut at
// UTF-8 boundaries; "quit" leaves.
func TestScriptLongLineAndQuit(t *testing.T) {
	r := relaytest.Start(t)
	addr := r.Addr.String()
	bob := dialRaw(t, addr, "bob")

	long := strings.Repeat("汉字abc", 300) // 2700 bytes: three datagrams for "carol"
	carol := startClient(t, []string{"--name", "carol", addr}, nil)
	bob.waitFor(t, "carol joined the chat room")
	carol.say(t, long)
	carol.say(t, "/quit")
	if code := carol.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("carol exit %d, want 0; stderr: %s", code, carol.stderr.String())
	}
	bob.waitFor(t, "carol left the chat room")

	var got strings.Builder
	parts := 0
	for _, d := range bob.received() {
		if text, ok := strings.CutPrefix(d, "carol says: "); ok {
			if !utf8.ValidString(text) {
				t.Errorf("part %d is not valid UTF-8", parts)
			}
			if n := len("C carol ") + len(text); n > wire.DefaultMaxDatagram {
				t.Errorf("part %d needed a %d-byte datagram", parts, n)
			}
			got.WriteString(text)
			parts++
		}
	}
	if got.String() != long {
		t.Errorf("received %d bytes in %d parts, want the %d-byte line whole", got.Len(), parts, len(long))
	}
	if parts != 3 {
		t.Errorf("line sent in %d parts, want 3", parts)
	}
}

func TestScriptRefusedName(t *testing.T) {
	r := relaytest.Start(t)
	addr := r.Addr.String()
	bob := dialRaw(t, addr, "bob")

	t.Run("flag reserved", func(t *testing.T) {
		c := startClient(t, []string{"--name", "admin", addr}, strings.NewReader("hello\n"))
		if code := c.wait(t, 5*time.Second); code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		if got, want := c.stderr.String(), "chatcli: login refused: name reserved\n"; got != want {
			t.Errorf("stderr %q, want %q", got, want)
		}
	})
	t.Run("flag taken", func(t *testing.T) {
		c := startClient(t, []string{"--name", "bob", addr}, strings.NewReader("hello\n"))
		if code := c.wait(t, 5*time.Second); code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		if got, want := c.stderr.String(), "chatcli: login refused: name taken\n"; got != want {
			t.Errorf("stderr %q, want %q", got, want)
		}
	})
	t.Run("first lines", func(t *testing.T) {
		// A refused name line makes the next line the next attempt.
		c := startClient(t, []string{addr}, strings.NewReader("admin\nbob\nalice\nhi\n"))
		if code := c.wait(t, 5*time.Second); code != 0 {
			t.Errorf("exit %d, want 0; stderr: %s", code, c.stderr.String())
		}
		bob.waitFor(t, "alice joined the chat room")
		bob.waitFor(t, "alice says: hi")
		bob.waitFor(t, "alice left the chat room")
		stderr := c.stderr.String()
		for _, want := range []string{"login refused: name reserved", "login refused: name taken"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr %q lacks %q", stderr, want)
			}
		}
	})
	t.Run("no name left", func(t *testing.T) {
		c := startClient(t, []string{addr}, strings.NewReader("admin\n"))
		if code := c.wait(t, 5*time.Second); code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		if !strings.Contains(c.stderr.String(), "end of input before a name was accepted") {
			t.Errorf("stderr %q", c.stderr.String())
		}
	})
}

func TestScriptUnreachable(t *testing.T) {
	t.Run("nothing listening", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		pc.Close()

		start := time.Now()
		c := startClient(t, []string{"--name", "alice", addr}, strings.NewReader("hi\n"))
		code := c.wait(t, 10*time.Second)
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("took %v to give up, want under 5s", elapsed)
		}
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		stderr := c.stderr.String()
		if !strings.HasPrefix(stderr, "chatcli: relay at "+addr) || !strings.Contains(stderr, "is it running?") ||
			strings.Count(stderr, "\n") != 1 {
			t.Errorf("stderr %q, want one clear line", stderr)
		}
	})
	t.Run("silent", func(t *testing.T) {
		// Something listens but never answers: no ICMP, only the timeout.
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		addr := pc.LocalAddr().String()

		start := time.Now()
		c := startClient(t, []string{"--proto", "classic", addr}, strings.NewReader("alice\nhi\n"))
		code := c.wait(t, 10*time.Second)
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("took %v to give up, want under 5s", elapsed)
		}
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		if got, want := c.stderr.String(), "chatcli: no reply from relay at "+addr+" (is it running?)\n"; got != want {
			t.Errorf("stderr %q, want %q", got, want)
		}

		// auto waits for 6 v2 hellos over more than 3 s, then tries classic.
		start = time.Now()
		c = startClient(t, []string{addr}, strings.NewReader("alice\nhi\n"))
		code = c.wait(t, 15*time.Second)
		if elapsed := time.Since(start); elapsed < 3*time.Second || elapsed > 9*time.Second {
			t.Errorf("auto took %v to give up, want 3.6 s of v2 and 3 s of classic", elapsed)
		}
		if code != 1 {
			t.Errorf("auto: exit %d, want 1", code)
		}
		if got, want := c.stderr.String(), fallbackNote(addr)+"\nchatcli: no reply from relay at "+addr+" (is it running?)\n"; got != want {
			t.Errorf("auto: stderr %q, want %q", got, want)
		}
		// v2 only gives up after the hellos.
		c = startClient(t, []string{"--proto", "v2", "--name", "alice", addr}, nil)
		if code := c.wait(t, 10*time.Second); code != 1 || c.stderr.String() != "chatcli: no reply from relay at "+addr+" (is it running?)\n" {
			t.Errorf("v2: exit %d, stderr %q", code, c.stderr.String())
		}
	})
}

// The relay ending the session (EXIT unprompted) ends script mode with 1,
// after printing what came before.
func TestScriptKicked(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// A minimal classic relay that accepts, then announces and kicks.
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if strings.HasPrefix(string(buf[:n]), "L ") {
				pc.WriteTo([]byte("OK"), from)
				pc.WriteTo([]byte("Admin notice: \x1b[31mbye\n"), from)
				pc.WriteTo([]byte("EXIT"), from)
			}
		}
	}()
	c := startClient(t, []string{"--name", "alice", pc.LocalAddr().String()}, nil)
	if code := c.wait(t, 5*time.Second); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if got, want := c.stdout.String(), "Admin notice: \uFFFD[31mbye\n"; got != want {
		t.Errorf("stdout %q, want %q (escape neutralised, one line)", got, want)
	}
	if !strings.Contains(c.stderr.String(), "ended the session") {
		t.Errorf("stderr %q", c.stderr.String())
	}
}

func TestSplitText(t *testing.T) {
	tests := []struct {
		text string
		max  int
		want []string
	}{
		{"hello", 10, []string{"hello"}},
		{"hello", 5, []string{"hello"}},
		{"helloworld", 5, []string{"hello", "world"}},
		{"世界世界", 4, []string{"世", "界", "世", "界"}},
		{"a世界", 6, []string{"a世", "界"}},
		{"😀😀x", 4, []string{"😀", "😀", "x"}},
	}
	for _, tt := range tests {
		got := splitText(tt.text, tt.max)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("splitText(%q, %d) = %q, want %q", tt.text, tt.max, got, tt.want)
		}
	}
	if n := maxChatText("alice"); n != wire.DefaultMaxDatagram-len("C alice ") {
		t.Errorf("maxChatText(alice) = %d", n)
	}
}

func TestCleanLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice says: hi", "alice says: hi"},
		{"a\tb\r\nc", "a b  c"},
		{"\x1b[2Jgone", "\uFFFD[2Jgone"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"abc\u202Edef", "abcdef"},
		{"张三 说: 你好", "张三 说: 你好"},
	}
	for _, tt := range tests {
		if got := cleanLine(tt.in); got != tt.want {
			t.Errorf("cleanLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := cleanText("a\tb\x07c\xff"); got != "a bc\uFFFD" {
		t.Errorf("cleanText = %q", got)
	}
}

// A kick by the real relay: the notice is printed, then exit 1.
func TestScriptKickedByRelay(t *testing.T) {
	r := relaytest.Start(t)
	c := startClient(t, []string{"--name", "alice", r.Addr.String()}, nil)
	c.say(t, "hi") // sent once logged in, so the kick below finds alice
	waitFor(t, 5*time.Second, "alice's login", func() bool { return r.Server.Stats().Members == 1 })
	if _, err := r.Server.Kick("alice", "spam"); err != nil {
		t.Fatal(err)
	}
	if code := c.wait(t, 5*time.Second); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	c.waitStdout(t, "Admin notice: you were removed by the administrator: spam")
	if !strings.Contains(c.stderr.String(), "ended the session") {
		t.Errorf("stderr %q", c.stderr.String())
	}
}

// Logins are retransmitted when replies are slow or lost, and the OK
// answering a retransmission is not shown as a message.
func TestScriptLoginRetransmit(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	logins := make(chan int, 16)
	go func() {
		buf := make([]byte, 2048)
		n := 0
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			switch req := string(buf[:k]); {
			case strings.HasPrefix(req, "L "):
				n++
				logins <- n
				if n == 1 {
					continue // the first one is lost
				}
				// Slow replies: the client resends before each arrives.
				time.AfterFunc(700*time.Millisecond, func() {
					pc.WriteTo([]byte("OK"), from)
					if n == 3 {
						pc.WriteTo([]byte("hello"), from)
					}
				})
			case strings.HasPrefix(req, "Q "):
				pc.WriteTo([]byte("EXIT"), from)
			}
		}
	}()
	c := startClient(t, []string{"--name", "alice", pc.LocalAddr().String()}, nil)
	c.waitStdout(t, "hello")
	c.in.Close()
	if code := c.wait(t, 5*time.Second); code != 0 {
		t.Errorf("exit %d, want 0; stderr: %s", code, c.stderr.String())
	}
	if got := c.stdout.String(); got != "hello\n" {
		t.Errorf("stdout %q, want only %q", got, "hello\n")
	}
	if n := len(logins); n < 3 {
		t.Errorf("%d logins sent, want at least 3", n)
	}
}
