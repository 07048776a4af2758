package relay

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// TestSharedLogRowsKeepTheSendersIDs: a chat that reaches this node from
// its room's shared log (another node's, or this node's own before the
// handler that stored it delivered it) names its sender by name only; the
// member of that name, of revision 3, still gets its chats' rows with
// their ids (its acknowledgement), and everyone else without.
func TestSharedLogRowsKeepTheSendersIDs(t *testing.T) {
	s := newWiredServer(t, Config{Flood: FloodOff(), MaxPerIP: -1})
	r, err := s.openRoom("dev")
	if err != nil {
		t.Fatal(err)
	}
	socks := map[string]*net.UDPConn{}
	for _, name := range []string{"bob", "carol"} {
		rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		socks[name] = rc
		m, _, err := s.reg.Join(name, ProtoV2, newToken(), rc.LocalAddr().(*net.UDPAddr).AddrPort(), netip.Addr{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		m.rev.Store(3)
		if _, ok := r.join(m); !ok {
			t.Fatal("join")
		}
	}
	r.feed.mu.Lock()
	next := r.feed.next
	r.feed.mu.Unlock()
	for i, text := range []string{"one", "two"} {
		line := wire.AppendFrame(nil, &wire.Frame{T: wire.FrameChat, Room: "dev", Seq: next + uint64(i), Epoch: "e", From: "bob", ID: uint64(7 + i), Text: text})
		s.logEvent(r, next+uint64(i), line, uint64(1-i)) // the first with one more behind it: both leave together
	}
	want := map[string][]string{"bob": {`["bob","one",7]`, `["bob","two",8]`}, "carol": {`["bob","one"]`, `["bob","two"]`}}
	for name, rows := range want {
		rc := socks[name]
		rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2048)
		n, err := rc.Read(buf)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := string(buf[:n])
		for _, row := range rows {
			if !strings.Contains(got, "\n"+row+"\n") {
				t.Errorf("%s got\n%s\nwithout the row %s", name, got, row)
			}
		}
	}
}

// TestAFollowersLastEventSendsWhatWaitedForIt: this node's own chat,
// stored right after another node's that the shared log has not handed
// over yet, waits for it; the log then hands over the other's with one more
// behind (this node's own), and this node's own, delivered already. Both
// reach the member then, not at the sweeper's next round a second later
// (the classic members of the second relay in relaybench's nodes2 missed
// such a pair when the step ended 300 ms after the last delivery).
func TestAFollowersLastEventSendsWhatWaitedForIt(t *testing.T) {
	s := newWiredServer(t, Config{Flood: FloodOff(), MaxPerIP: -1})
	r, err := s.openRoom("dev")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	m, _, err := s.reg.Join("carol", ProtoV2, newToken(), rc.LocalAddr().(*net.UDPAddr).AddrPort(), netip.Addr{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.join(m); !ok {
		t.Fatal("join")
	}
	r.feed.mu.Lock()
	next := r.feed.next
	r.feed.mu.Unlock()
	lines := make([][]byte, 2)
	for i, from := range []string{"alice@other", "bob"} {
		lines[i] = wire.AppendFrame(nil, &wire.Frame{T: wire.FrameChat, Room: "dev", Seq: next + uint64(i), Epoch: "e", From: from, Text: "chat " + from})
	}
	// The handler of bob's chat (stored as next+1) delivers it, and its
	// job ends with a flush: nothing leaves, it waits for next.
	r.deliver(next+1, Event{Members: r.Members(), V2: lines[1]}, s.out)
	s.out.Flush()
	s.logEvent(r, next, lines[0], 1)
	s.logEvent(r, next+1, lines[1], 0)
	var got string
	buf := make([]byte, 4096)
	rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for !strings.Contains(got, `"chat bob"`) {
		n, err := rc.Read(buf)
		if err != nil {
			t.Fatalf("carol got %q, then %v: the pair waits for a flush that does not come", got, err)
		}
		got += string(buf[:n])
	}
	if a, b := strings.Index(got, `"chat alice@other"`), strings.Index(got, `"chat bob"`); a < 0 || a > b {
		t.Errorf("carol got %q: want alice's chat, then bob's", got)
	}
}
