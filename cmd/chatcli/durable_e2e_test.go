package main

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// relayUp waits until a relay at addr answers a classic login (then quits
// the probe session).
func relayUp(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	waitFor(t, 20*time.Second, "the relay to answer", func() bool {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return false
		}
		defer c.Close()
		c.Write([]byte("L probe"))
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		b := make([]byte, 64)
		n, err := c.Read(b)
		if err == nil && string(b[:n]) == "OK" {
			c.Write([]byte("Q probe"))
			return true
		}
		return false
	})
}

// The relay is killed with SIGKILL mid-chat and started again two seconds
// later on the same --data-dir: the v2 members resume their sessions (no
// "restart", no "missed", one epoch), every line alice typed before, during
// and after the outage reaches bob once and in order, and the classic
// member is still a member: it receives alice's lines without logging in
// again.
func TestSIGKILLRestartLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs real processes")
	}
	chatcli, relayBin := buildChatcli(t), buildRelayBin(t)
	addr := freeUDPPort(t)
	dataDir := t.TempDir()
	args := []string{"--listen", addr.String(), "--metrics-listen", "", "--admin-socket", filepath.Join(t.TempDir(), "admin.sock"),
		"--flood", "off", "--data-dir", dataDir}
	relay1 := startProc(t, relayBin, args...)
	relayUp(t, addr)

	// carol is a classic client: a plain UDP socket, as nc -u.
	carol, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer carol.Close()
	carol.Write([]byte("L carol"))
	carolLines := make(chan string, 1000)
	go func() {
		b := make([]byte, 2048)
		for {
			n, err := carol.Read(b)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				close(carolLines)
				return
			}
			carolLines <- string(b[:n])
		}
	}()
	if line := <-carolLines; line != "OK" {
		t.Fatalf("carol's login: %q", line)
	}

	alice := startProc(t, chatcli, "--json", "--proto", "v2", "--name", "alice", addr.String())
	bob := startProc(t, chatcli, "--json", "--proto", "v2", "--name", "bob", addr.String())
	chats := func(p *proc, from string) []map[string]any {
		var out []map[string]any
		for _, e := range jsonEvents(t, p.stdout()) {
			if e["type"] == "chat" && e["from"] == from {
				out = append(out, e)
			}
		}
		return out
	}
	waitFor(t, 20*time.Second, "bob's join at alice", func() bool {
		for _, e := range jsonEvents(t, alice.stdout()) {
			if e["type"] == "join" && e["from"] == "bob" {
				return true
			}
		}
		return false
	})
	say := func(from, to int) {
		for i := from; i < to; i++ {
			fmt.Fprintf(alice.stdin, "line %d\n", i)
		}
	}
	say(0, 20)
	waitFor(t, 20*time.Second, "alice's first 20 lines at bob", func() bool { return len(chats(bob, "alice")) >= 20 })

	// SIGKILL: no goodbye, nothing flushed but what JetStream stored.
	if err := relay1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	relay1.cmd.Wait()
	say(20, 40)                 // typed while the relay is down
	time.Sleep(2 * time.Second) // the outage itself, as in the report
	startProc(t, relayBin, args...)
	say(40, 60)

	waitFor(t, 60*time.Second, "all 60 of alice's lines at bob", func() bool { return len(chats(bob, "alice")) >= 60 })
	got := chats(bob, "alice")
	epoch := got[0]["epoch"]
	for i, e := range got {
		if want := fmt.Sprintf("line %d", i); e["text"] != want {
			t.Fatalf("bob's chat %d from alice is %q, want %q (lost, doubled or out of order)", i, e["text"], want)
		}
		if i > 0 && e["seq"].(float64) <= got[i-1]["seq"].(float64) {
			t.Fatalf("seq %v after %v: not one order", e["seq"], got[i-1]["seq"])
		}
		if e["epoch"] != nil && e["epoch"] != epoch {
			t.Fatalf("chat %d in epoch %v, the first in %v: history was lost", i, e["epoch"], epoch)
		}
	}
	if len(got) != 60 {
		t.Fatalf("bob saw %d of alice's lines, want 60 each once", len(got))
	}
	// carol, classic, never logged in again and still gets alice's lines
	// typed after the restart.
	deadline := time.After(20 * time.Second)
	want := "alice says: line 59"
wait:
	for {
		select {
		case line, ok := <-carolLines:
			if !ok {
				t.Fatal("carol's socket closed")
			}
			if line == want {
				break wait
			}
		case <-deadline:
			t.Fatalf("carol (classic) did not get %q after the restart", want)
		}
	}
	// Leave (each after the relay confirmed its lines), then read what
	// each was told on stderr.
	for _, p := range []*proc{alice, bob} {
		fmt.Fprintln(p.stdin, "/quit")
		p.stdin.Close()
		p.cmd.Wait()
	}
	for _, p := range []*proc{alice, bob} {
		for _, e := range jsonEvents(t, p.stdout()) {
			if e["type"] == "missed" {
				t.Errorf("a member was told it missed messages: %v", e)
			}
		}
		// "connection lost, resuming the session" and "session resumed"
		// are right; "the relay restarted: ... history before the restart
		// is lost" is what this test is here to rule out.
		if s := p.stderr.String(); strings.Contains(s, "restarted") || strings.Contains(s, "history") || !strings.Contains(s, "session resumed") {
			t.Errorf("a member's notes on the outage: %q; want a resumed session, no restart, no history lost", s)
		}
	}
}
