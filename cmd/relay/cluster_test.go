package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// startNATS runs a JetStream nats-server on a loopback port until the test
// ends, and returns its client URL.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	return runNATS(t, &server.Options{
		ServerName: "test-nats",
		Host:       "127.0.0.1",
		Port:       -1, // a free port
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	})
}

// runNATS starts a nats-server with opts, waits until it takes clients and
// shuts it down when the test ends (if the test did not already).
func runNATS(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats-server %s not ready", opts.ServerName)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// startNodes starts n relays sharing the NATS server at url.
func startNodes(t *testing.T, url string, n int, opt func(*Options)) []*daemon {
	t.Helper()
	nodes := make([]*daemon, n)
	for i := range nodes {
		nodes[i] = startDaemon(t, nodeOptions(t, url, i, opt))
	}
	return nodes
}

// nodeOptions are the options of relay node i+1 on the NATS server at url,
// with opt applied.
func nodeOptions(t *testing.T, url string, i int, opt func(*Options)) Options {
	o := testOptions(t)
	o.NATS = url
	o.Node = fmt.Sprintf("node-%d", i+1)
	o.Flood = "off"
	if opt != nil {
		opt(&o)
	}
	return o
}

// Three relays on one NATS cluster serve one room: every member, whatever
// node it is on, sees every chat from every node once, in one order (the
// same seqs, the same epoch), and a classic member sees the others' chats
// as classic lines.
func TestClusterOneOrderAcrossThreeNodes(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns.ClientURL(), 3, nil)

	names := []string{"alice", "bob", "carol"}
	clients := make([]*client.Client, 3)
	for i, name := range names {
		clients[i] = dialV2(t, nodes[i], name)
	}
	dave := nodes[2].join(t, "dave") // classic, on node 3

	const per = 30
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range per {
				if _, err := c.Send(fmt.Sprintf("%s %d", names[i], k)); err != nil {
					t.Errorf("%s: %v", names[i], err)
					return
				}
			}
		}()
	}
	wg.Wait()

	type ev struct {
		seq   uint64
		epoch string
		text  string
	}
	orders := make([][]ev, 3)
	for i, c := range clients {
		deadline := time.After(20 * time.Second)
		for len(orders[i]) < 3*per {
			select {
			case e, ok := <-c.Events():
				if !ok {
					t.Fatalf("%s's session ended after %d chats", names[i], len(orders[i]))
				}
				if e.Type == client.EventChat && !e.History {
					orders[i] = append(orders[i], ev{e.Seq, e.Epoch, e.Text})
				}
			case <-deadline:
				t.Fatalf("%s (node %d) saw %d of %d chats", names[i], i+1, len(orders[i]), 3*per)
			}
		}
	}
	seen := map[string]bool{}
	for k, e := range orders[0] {
		if seen[e.text] {
			t.Fatalf("alice saw %q twice", e.text)
		}
		seen[e.text] = true
		if k > 0 && e.seq <= orders[0][k-1].seq {
			t.Fatalf("alice's chats out of order: seq %d after %d", e.seq, orders[0][k-1].seq)
		}
		for i := 1; i < 3; i++ {
			if orders[i][k] != e {
				t.Fatalf("chat %d: %s saw %+v, alice %+v: not one order", k, names[i], orders[i][k], e)
			}
		}
	}

	// The classic member on node 3 got alice's chats (node 1) as lines.
	buf := make([]byte, 2048)
	got := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < per {
		dave.c.SetReadDeadline(deadline)
		n, err := dave.c.Read(buf)
		if err != nil {
			t.Fatalf("dave (classic, node 3) got %d of alice's %d chats: %v", len(got), per, err)
		}
		line := string(buf[:n])
		if strings.HasPrefix(line, "alice says: alice ") {
			got[line] = true
		}
	}
}

// A name is one relay-wide: 100 logins of one name sent at once to three
// nodes give exactly one OK, and the other 99 are told it is taken.
func TestClusterOneNameOneOK(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns.ClientURL(), 3, nil)

	const n = 100
	conns := make([]*net.UDPConn, n)
	for i := range conns {
		c, err := net.DialUDP("udp", nil, nodes[i%3].l.UDP.(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	replies := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			buf := make([]byte, 512)
			// As a classic client does: the login again each second until
			// an answer comes (bounded).
			for range 10 {
				if _, err := c.Write([]byte("L zed")); err != nil {
					return
				}
				c.SetReadDeadline(time.Now().Add(time.Second))
				if k, err := c.Read(buf); err == nil {
					replies[i] = string(buf[:k])
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	ok, taken := 0, 0
	for i, r := range replies {
		switch r {
		case "OK":
			ok++
		case "name taken":
			taken++
		default:
			t.Errorf("login %d (node %d) got %q", i, i%3+1, r)
		}
	}
	if ok != 1 || taken != n-1 {
		t.Fatalf("%d OK and %d 'name taken' of %d logins of one name on three nodes; want exactly one OK", ok, taken, n)
	}
}

// With NATS gone, a relay says so: /healthz answers 503 while /livez still
// answers 200, chatrelay_nats_connected is 0, new logins are refused with
// a reason, and all of it recovers by itself when NATS is back.
func TestClusterNATSUnreachable(t *testing.T) {
	dir := t.TempDir()
	opts := &server.Options{ServerName: "test-nats", Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true}
	ns := runNATS(t, opts)
	port := ns.Addr().(*net.TCPAddr).Port
	nodes := startNodes(t, ns.ClientURL(), 1, nil)
	d := nodes[0]
	base := "http://" + d.l.Metrics.String()

	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	metric := func(name string) string {
		_, body := get("/metrics")
		return strings.TrimSpace(grepPrefix(body, name+" "))
	}
	waitFor := func(what string, cond func() bool) { t.Helper(); waitUntil(t, 15*time.Second, what, cond) }
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz with NATS up: %d", code)
	}
	if m := metric("chatrelay_nats_connected"); m != "chatrelay_nats_connected 1" {
		t.Fatalf("with NATS up: %q", m)
	}
	alice := d.join(t, "alice")

	ns.Shutdown()
	ns.WaitForShutdown()
	waitFor("/healthz to answer 503", func() bool { code, _ := get("/healthz"); return code == http.StatusServiceUnavailable })
	if _, body := get("/healthz"); !strings.Contains(body, "NATS") {
		t.Errorf("/healthz body %q does not say NATS is the trouble", body)
	}
	if code, _ := get("/livez"); code != http.StatusOK {
		t.Errorf("/livez with NATS down: %d, want 200", code)
	}
	if m := metric("chatrelay_nats_connected"); m != "chatrelay_nats_connected 0" {
		t.Errorf("with NATS down: %q", m)
	}
	// A new login is refused with the reason; a classic chat is refused
	// with one line to its sender and counted.
	bob, err := net.DialUDP("udp", nil, d.l.UDP.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	bm := &member{t: t, c: bob}
	bm.send("L bob")
	bm.expect("the relay cannot reach its store: try again shortly")
	alice.send("C alice while NATS is down")
	alice.expect("the relay cannot reach its store: try again shortly")
	if m := metric(`chatrelay_datagrams_dropped_total{reason="store_unavailable"}`); m != `chatrelay_datagrams_dropped_total{reason="store_unavailable"} 1` {
		t.Errorf("classic chat refused: %q", m)
	}

	// NATS back on the same port and store: the relay recovers by itself.
	opts.Port = port
	runNATS(t, opts)
	waitFor("/healthz to answer 200 again", func() bool { code, _ := get("/healthz"); return code == http.StatusOK })
	waitFor("bob's login to succeed", func() bool {
		bm.send("L bob")
		buf := make([]byte, 512)
		bob.SetReadDeadline(time.Now().Add(time.Second))
		n, err := bob.Read(buf)
		return err == nil && string(buf[:n]) == "OK"
	})
	alice.send("C alice NATS is back")
	bob.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	for {
		n, err := bob.Read(buf)
		if err != nil {
			alice.c.SetReadDeadline(time.Now().Add(time.Second))
			n, aerr := alice.c.Read(buf)
			t.Fatalf("bob did not get alice's chat after NATS came back: %v (alice got %q %v)", err, buf[:max(n, 0)], aerr)
		}
		if string(buf[:n]) == "alice says: NATS is back" {
			break
		}
	}
}

// buildRelay builds this command once per test binary, for tests that
// need a relay they can kill with SIGKILL.
func buildRelay(t *testing.T) string {
	t.Helper()
	relayBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "relay-test")
		if err != nil {
			relayBinErr = err.Error()
			return
		}
		relayBinDir = dir
		bin := filepath.Join(dir, "relay")
		if out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".").CombinedOutput(); err != nil {
			relayBinErr = fmt.Sprintf("go build: %v\n%s", err, out)
			return
		}
		relayBin = bin
	})
	if relayBin == "" {
		t.Fatal(relayBinErr)
	}
	return relayBin
}

var (
	relayBinOnce sync.Once
	relayBinDir  string // removed by TestMain
	relayBin     string
	relayBinErr  string
)

// freeUDP returns a loopback UDP address nobody listens on now.
func freeUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// startNodeProc runs a relay process on the NATS at url until the test
// ends (or it is killed), and waits until it answers.
func startNodeProc(t *testing.T, url, node string) (*exec.Cmd, netip.AddrPort) {
	t.Helper()
	return startRelayProc(t, node, "--nats", url, "--node", node, "--name-lease", "4s")
}

// startRelayProc runs a relay process with args as well until the test
// ends (or it is killed), and waits until it answers; node names it in
// the test's log.
func startRelayProc(t *testing.T, node string, args ...string) (*exec.Cmd, netip.AddrPort) {
	t.Helper()
	addr := freeUDP(t)
	cmd := exec.Command(buildRelay(t), append([]string{"--listen", addr.String(), "--metrics-listen", "", "--admin-socket", shortSocketPath(t),
		"--flood", "off", "--log-level", "warn"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s's log:\n%s", node, stderr.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if loginOK(addr, "probe-"+node) {
			return cmd, addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer", node)
		}
	}
}

// loginOK sends one classic login of name to addr and reports whether it
// got OK within 200 ms (quitting the session then).
func loginOK(addr netip.AddrPort, name string) bool {
	return classicLogin(net.UDPAddrFromAddrPort(addr), name, 200*time.Millisecond) == "OK"
}

// A relay node is killed (SIGKILL) mid-chat: its v2 member resumes on
// another node (the path to the dead one now leads there) and loses none
// of the chats sent meanwhile, nor sees any twice; nobody is told the
// relay restarted or that messages were missed; its chats after the move
// reach the others; and the dead node's classic member's name is freed
// after the lease.
func TestClusterNodeKilledClientsResumeElsewhere(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs real relay processes")
	}
	ns := startNATS(t)
	node1, addr1 := startNodeProc(t, ns.ClientURL(), "node-1")
	_, addr2 := startNodeProc(t, ns.ClientURL(), "node-2")

	// alice reaches node 1 through a path that can be pointed elsewhere,
	// as a load balancer or chatcli's next address would.
	path := relaytest.NewLossyProxy(t, addr1, relaytest.LossConfig{})
	dial := func(addr netip.AddrPort, name string, seed uint64) *client.Client {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Silence for 2 s (not 8) means the path is dead: within the
		// test's 4 s lease.
		c, err := client.Dial(ctx, client.Config{Addr: addr.String(), Name: name, Rand: rand.New(rand.NewPCG(seed, 1)), HeartbeatEvery: 500 * time.Millisecond, DeadAfter: 2 * time.Second})
		if err != nil {
			t.Fatalf("dial %s: %v", name, err)
		}
		t.Cleanup(func() { closeV2(c) })
		return c
	}
	alice := dial(path.Addr(), "alice", 1)
	bob := dial(addr2, "bob", 2)
	dave, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr1)) // classic, on node 1
	if err != nil {
		t.Fatal(err)
	}
	defer dave.Close()
	(&member{t: t, c: dave}).send("L dave")
	(&member{t: t, c: dave}).expect("OK")

	const n = 100
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range n {
			if _, err := bob.Send(fmt.Sprintf("bob %d", i)); err != nil {
				t.Errorf("bob: %v", err)
				return
			}
			time.Sleep(10 * time.Millisecond) // a steady chat, so that the kill falls in the middle
		}
	}()

	var got []string
	killed, resumed := false, false
	deadline := time.After(60 * time.Second)
	for len(got) < n {
		select {
		case e, ok := <-alice.Events():
			if !ok {
				t.Fatalf("alice's session ended after %d of bob's chats", len(got))
			}
			switch e.Type {
			case client.EventResumed:
				resumed = true
			case client.EventNewSession:
				t.Fatalf("alice's session was not adopted by node 2: %+v", e)
			case client.EventChat:
				if e.From == "bob" && !e.History {
					got = append(got, e.Text)
				}
			case client.EventMissed, client.EventRestarted, client.EventRestarting:
				t.Fatalf("alice was told %s: %+v", e.Type, e)
			}
		case <-deadline:
			t.Fatalf("alice saw %d of bob's %d chats: %q", len(got), n, got)
		}
		if !killed && len(got) >= 20 {
			path.SetTarget(addr2)
			if err := node1.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	<-sent
	if !resumed {
		t.Fatal("alice never resumed her session")
	}
	for i, text := range got {
		if want := fmt.Sprintf("bob %d", i); text != want {
			t.Fatalf("alice's chat %d from bob is %q, want %q (lost, doubled or out of order)", i, text, want)
		}
	}
	// alice goes on from node 2: bob gets her chat.
	if _, err := alice.Send("hello from node 2"); err != nil {
		t.Fatal(err)
	}
	chatsSeen(t, bob, false, "hello from node 2")
	// node 1's classic member never comes back: the others see it time
	// out once (every relay sees its session expire; the log keeps one
	// event), alice does not (she came back), and its name is freed after
	// the lease (4 s here), so that someone else may take it.
	timeouts := map[string]int{}
	tdeadline := time.After(20 * time.Second)
	for timeouts["dave"] == 0 {
		select {
		case e, ok := <-bob.Events():
			if !ok {
				t.Fatal("bob's session ended")
			}
			if e.Type == client.EventTimeout {
				timeouts[e.From]++
			}
		case <-tdeadline:
			t.Fatalf("bob never saw dave (classic, on the dead node) time out; timeouts %v", timeouts)
		}
	}
	if _, err := bob.Send("after dave"); err != nil {
		t.Fatal(err)
	}
	for done := false; !done; {
		select {
		case e := <-bob.Events():
			if e.Type == client.EventTimeout {
				timeouts[e.From]++
			}
			done = e.Type == client.EventChat && e.Text == "after dave"
		case <-time.After(10 * time.Second):
			t.Fatal("bob's own chat did not come back")
		}
	}
	if timeouts["dave"] != 1 || timeouts["alice"] != 0 {
		t.Fatalf("timeouts seen by bob: %v; want dave once and never alice", timeouts)
	}
	waitDeadline := time.Now().Add(15 * time.Second)
	for !loginOK(addr2, "dave") {
		if time.Now().After(waitDeadline) {
			t.Fatal("dave's name was not freed after node 1 died")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Members of different relays are one chat service: who lists the room's
// members on every relay, the room list counts them all, and a direct
// message reaches a member of another relay (v2: in its inbox; classic:
// one whispered line), while a name nobody holds is refused.
func TestClusterWhoAndDirectMessagesAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns.ClientURL(), 2, nil)
	alice := dialV2(t, nodes[0], "alice")
	bob := dialV2(t, nodes[1], "bob")
	carol := nodes[1].join(t, "carol") // classic, on node 2

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var names []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		if names, err = alice.WhoIn(ctx, "main"); err != nil {
			t.Fatal(err)
		}
		if strings.Join(names, ",") == "alice,bob,carol" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("who main at node 1: %q, want alice, bob and carol", names)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Each relay learns of the others' sessions from the store's watch, a
	// moment after they are stored.
	for deadline := time.Now().Add(10 * time.Second); ; {
		rooms, err := bob.Rooms(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rooms) == 1 && rooms[0].Count == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("room list at node 2: %+v, want main with 3 members", rooms)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if _, err := alice.Msg("bob", "psst, bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Msg("carol", "psst, carol"); err != nil {
		t.Fatal(err)
	}
	waitDM := func(c *client.Client, text string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case e := <-c.Events():
				if e.Type == client.EventDM && e.Text == text {
					if e.From != "alice" {
						t.Fatalf("%s got %q from %q", c.Name(), text, e.From)
					}
					return
				}
			case <-deadline:
				t.Fatalf("%s did not get %q", c.Name(), text)
			}
		}
	}
	waitDM(bob, "psst, bob")
	waitDM(alice, "psst, bob") // her own copy: delivered
	// carol may first get the joins of the others (another relay's
	// events reach this one a moment later): read up to the whisper.
	buf := make([]byte, 2048)
	for {
		carol.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := carol.c.Read(buf)
		if err != nil {
			t.Fatalf("carol (classic, node 2) did not get alice's whisper: %v", err)
		}
		if line := string(buf[:n]); line == "alice whispers: psst, carol" {
			break
		} else if !strings.HasSuffix(line, " joined the chat room") {
			t.Fatalf("carol got %q before alice's whisper", line)
		}
	}

	if _, err := alice.Msg("nobody", "hello?"); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-alice.Events():
			if e.Type == client.EventError && e.To == "nobody" {
				if e.Code != "no_such_member" {
					t.Fatalf("a DM to nobody: %+v", e)
				}
				return
			}
		case <-deadline:
			t.Fatal("a DM to a name nobody holds was not refused")
		}
	}
}
