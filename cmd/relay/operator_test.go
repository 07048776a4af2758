package main

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// joinFrom sends a classic login for name from the loopback address src
// (all of 127/8 is local) and returns the relay's answer.
func joinFrom(t *testing.T, d *daemon, src, name string) string {
	t.Helper()
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0)), d.l.UDP.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("L " + name)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("login %s from %s: %v", name, src, err)
	}
	return string(buf[:n])
}

// adminOK runs `relay admin args...` and returns what it printed, failing
// unless it succeeds.
func adminOK(t *testing.T, d *daemon, args ...string) string {
	t.Helper()
	out, errs, code := adminCLI(t, d.l.Admin, args...)
	if code != 0 {
		t.Fatalf("relay admin %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

type banRow struct {
	Target  string `json:"target"`
	Reason  string `json:"reason"`
	Set     string `json:"set"`
	Expires string `json:"expires"`
}

// bansOf lists the relay's bans by target.
func bansOf(t *testing.T, d *daemon) map[string]banRow {
	t.Helper()
	var rows []banRow
	if out := adminOK(t, d, "bans", "--json"); json.Unmarshal([]byte(out), &rows) != nil {
		t.Fatalf("bans --json: %q", out)
	}
	m := map[string]banRow{}
	for _, r := range rows {
		m[r.Target] = r
	}
	return m
}

// next reads c's events until one satisfies ok.
func next(t *testing.T, c *client.Client, what string, ok func(client.Event) bool) client.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e, open := <-c.Events():
			if !open {
				t.Fatalf("%s's session ended waiting for %s", c.Name(), what)
			}
			if ok(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("%s: no %s", c.Name(), what)
		}
	}
}

// With --data-dir everything the operator set survives a restart: bans
// (with their reason and end), a mute in a room, a room's topic, the
// lockdown. A ban that ended while the relay was down is gone. A room of
// the config file keeps the file's topic.
func TestDataDirKeepsOperatorState(t *testing.T) {
	dir := t.TempDir()
	options := func() Options {
		o := testOptions(t)
		o.DataDir = dir
		o.LimitExempt = "127.0.0.1/32" // the lockdown refuses the rest of 127/8
		o.Rooms = []relay.RoomSettings{{Name: "ops", Topic: "from the file"}}
		return o
	}
	d := startDaemon(t, options())
	adminOK(t, d, "ban", "eve", "--for", "1s")
	adminOK(t, d, "ban", "mallory", "spamming", "links")
	adminOK(t, d, "ban", "127.0.0.2/31", "--for", "1h", "flooding")
	adminOK(t, d, "mute", "alice", "--room", "dev")
	adminOK(t, d, "topic", "dev", "welcome", "to", "dev")
	adminOK(t, d, "topic", "ops", "from the operator")
	adminOK(t, d, "lockdown", "on")
	before := bansOf(t, d)
	d.stop(t)

	// eve's ban ends while the relay is down (stamps are whole seconds).
	end, err := time.Parse(time.RFC3339, before["eve"].Expires)
	if err != nil {
		t.Fatalf("eve's ban: %+v", before["eve"])
	}
	time.Sleep(time.Until(end.Add(time.Second)))

	d = startDaemon(t, options())
	if out := adminOK(t, d, "lockdown"); out != "lockdown on: new logins only from 127.0.0.1/32\n" {
		t.Fatalf("lockdown after the restart: %q", out)
	}
	if got := joinFrom(t, d, "127.0.0.5", "dave"); got != "the relay is in lockdown: no new logins" {
		t.Fatalf("a new login from outside --limit-exempt: %q", got)
	}
	if got := joinFrom(t, d, "127.0.0.1", "mallory"); got != "you are banned: spamming links" {
		t.Fatalf("mallory's login: %q", got)
	}
	if got := joinFrom(t, d, "127.0.0.2", "carol"); !strings.HasPrefix(got, "you are banned: flooding (") {
		t.Fatalf("a login from the banned prefix: %q", got)
	}
	after := bansOf(t, d)
	if _, ok := after["eve"]; ok || len(after) != 2 || after["mallory"] != before["mallory"] || after["127.0.0.2/31"] != before["127.0.0.2/31"] {
		t.Fatalf("bans after the restart %+v; before %+v", after, before)
	}
	if got := joinFrom(t, d, "127.0.0.1", "eve"); got != wire.ReplyOK {
		t.Fatalf("eve's login after her ban ended: %q", got)
	}

	alice := dialV2(t, d, "alice")
	if err := alice.Join("dev", ""); err != nil {
		t.Fatal(err)
	}
	joined := next(t, alice, "welcome to dev", func(e client.Event) bool { return e.Type == client.EventJoined && e.Room == "dev" })
	if joined.Topic != "welcome to dev" {
		t.Fatalf("joined dev: %+v, want its topic", joined)
	}
	if _, err := alice.SendTo("dev", "am I heard?"); err != nil {
		t.Fatal(err)
	}
	refused := next(t, alice, "an answer to her chat", func(e client.Event) bool {
		return e.Type == client.EventError || e.Type == client.EventChat && e.Room == "dev"
	})
	if refused.Type != client.EventError || refused.Code != wire.CodeMuted {
		t.Fatalf("alice's chat in dev: %+v, want it refused as muted", refused)
	}

	var rooms []relay.RoomInfo
	if out := adminOK(t, d, "rooms", "--json"); json.Unmarshal([]byte(out), &rooms) != nil {
		t.Fatalf("rooms --json: %q", out)
	}
	topics := map[string]string{}
	for _, r := range rooms {
		topics[r.Name] = r.Topic
	}
	if topics["dev"] != "welcome to dev" || topics["ops"] != "from the file" {
		t.Fatalf("rooms after the restart: %+v, want dev's topic kept and ops's from the file", rooms)
	}
}
