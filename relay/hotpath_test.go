package relay

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
)

// TestHeapPerMember holds 100,000 members (half classic, half v2) and
// bounds what an idle one costs: issue 4 targets 1 KiB, this allows 2.
func TestHeapPerMember(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 logins")
	}
	per := heapPerMember(t, 100_000)
	t.Logf("%.0f heap bytes per idle member", per)
	if per > 2048 {
		t.Fatalf("%.0f heap bytes per idle member, want at most 2048", per)
	}
}

// TestHotPathAllocations counts allocations (not time) on the hot path:
// parsing, decoding, lookup and encoding allocate nothing, and a whole
// received chat, classic or v2, handled into a fan-out to 100 loopback
// members (classic, v2, v2 of revision 2, compact, and of revision 3, rows,
// the sender's own packing among them), allocates less than
// once per datagram on average (the slabs the encoded lines are carved
// from are the only allocations left).
func TestHotPathAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	classic := []byte("C alice hello everyone, this is a 64-byte chat message for bench\n")
	if n := testing.AllocsPerRun(100, func() { _, _ = wire.ParseClassicInPlace(classic) }); n != 0 {
		t.Errorf("classic parse in place: %v allocations", n)
	}
	v2 := wire.EncodeV2(&wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, ID: 42, Text: "hello everyone"}, &wire.Frame{T: wire.FramePing, Room: wire.RoomMain, Last: 9})
	frames := make([]wire.Frame, 0, 4)
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if frames, err = wire.DecodeV2InPlace(frames[:0], v2); err != nil || len(frames) != 2 {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("v2 decode in place: %v allocations", n)
	}
	ev := wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, Seq: 1 << 40, Epoch: "5f3a9c01", From: "alice", ID: 7, Text: "hi \"all\"\t中文"}
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf = wire.AppendFrame(buf[:0], &ev) }); n != 0 {
		t.Errorf("AppendFrame: %v allocations", n)
	}
	r := newBenchRoom(t, 100)
	for i, m := range r.members { // a quarter of them revision 2 (compact), a quarter revision 3 (rows), the v2 sender among them
		switch {
		case m.Proto == ProtoV2 && i%4 == 3:
			m.rev.Store(2)
		case m.Proto == ProtoV2 && i%4 == 1:
			m.rev.Store(3)
		}
	}
	if r.members[1].Proto != ProtoV2 || r.members[1].rev.Load() != 3 {
		t.Fatal("the v2 sender is not of revision 3")
	}
	if n := testing.AllocsPerRun(100, func() { r.s.reg.Lookup(r.members[7].Addr()) }); n != 0 {
		t.Errorf("registry lookup: %v allocations", n)
	}
	const text = "hello everyone, this is a 64-byte chat message for the benchmark"
	g := &datagram{}
	handle := func(from *Member, msg []byte) { r.receive(g, from, msg) }
	before := r.s.main.log.Latest()
	msg := wire.AppendChat(nil, r.members[0].Name, text)
	if n := testing.AllocsPerRun(500, func() { handle(r.members[0], msg) }); n != 0 {
		t.Errorf("classic chat into 100 members: %v allocations per datagram", n)
	}
	id := uint64(0)
	if n := testing.AllocsPerRun(500, func() {
		id++
		msg = append(strconv.AppendUint(append(msg[:0], wire.V2Magic+`{"t":"chat","room":"main","id":`...), id, 10), `,"text":"`+text+`"}`...)
		handle(r.members[1], msg)
	}); n != 0 {
		t.Errorf("v2 chat into 100 members: %v allocations per datagram", n)
	}
	// Two chats in one datagram leave packed: compact for revision 2, rows
	// for revision 3 (the sender's with its ids).
	if n := testing.AllocsPerRun(500, func() {
		msg = append(strconv.AppendUint(append(msg[:0], wire.V2Magic+`{"t":"chat","room":"main","id":`...), id+1, 10), `,"text":"`+text+`"}`+"\n"...)
		msg = append(strconv.AppendUint(append(msg, `{"t":"chat","room":"main","id":`...), id+2, 10), `,"text":"`+text+`"}`...)
		id += 2
		handle(r.members[1], msg)
	}); n != 0 {
		t.Errorf("v2 datagram of two chats into 100 members: %v allocations per datagram", n)
	}
	// Every one of them was broadcast (AllocsPerRun runs once more to warm up).
	if got := r.s.main.log.Latest() - before; got != 1002+1002 {
		t.Fatalf("%d chats broadcast, want 2004", got)
	}
	// A heartbeat from a member that lacks nothing.
	ping := fmt.Appendf(nil, wire.V2Magic+`{"t":"ping","room":"main","last":%d}`+"\n", r.s.main.log.Latest())
	if n := testing.AllocsPerRun(500, func() { handle(r.members[1], ping) }); n != 0 {
		t.Errorf("v2 ping answered with a pong: %v allocations per datagram", n)
	}
}

// TestJoinKeepsItsOwnName: a name parsed in place from a buffer that is
// reused afterwards stays the member's name.
func TestJoinKeepsItsOwnName(t *testing.T) {
	r := NewRegistry(RegistryLimits{MaxMembers: 10}, nil, func(to netip.AddrPort, _ netip.Addr) udpio.Dest { return udpio.Dest{Addr: to} }, nil)
	buf := []byte("L alice")
	req, err := wire.ParseClassicInPlace(buf)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := r.Join(req.Name, ProtoClassic, "", netip.MustParseAddrPort("10.0.0.1:1000"), netip.Addr{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, "L zzzzz")
	if m.Name != "alice" || m.Key != "alice" || r.ByName("alice") != m {
		t.Fatalf("member is now %q (key %q)", m.Name, m.Key)
	}
}

// TestChatLineIsClassicLine: the fast classic chat line is byte for byte
// what fmt makes, in every language, for long, odd and percent-laden text.
func TestChatLineIsClassicLine(t *testing.T) {
	texts := []string{"hi", "100% sure %s %d %%", strings.Repeat("中", 700), strings.Repeat("x", wire.MaxClassicReply-12), "\t tab"}
	for lang, w := range wordings {
		for _, name := range []string{"alice", "小红", "%s"} {
			for _, text := range texts {
				if got, want := w.chatLine(name, text), classicLine(w.Chat, name, text); !bytes.Equal(got, want) {
					t.Errorf("%s: chatLine(%q, %q) = %q, want %q", lang, name, text, got, want)
				}
			}
		}
	}
	for _, format := range []string{"%s says %s", "%s", "%d %s", "%", "100%% %s %s", "%s %s %s"} {
		got, ok := appendLine(nil, format, "a", "b")
		if want := fmt.Sprintf(format, "a", "b"); ok && string(got) != want {
			t.Errorf("appendLine(%q) = %q, fmt says %q", format, got, want)
		}
	}
}

// TestRoomEventsStayIntact: datagrams and lines the room's log hands out never
// change afterwards, however many events follow (their slab blocks are
// never written again), and the backlog marks them as history.
func TestRoomEventsStayIntact(t *testing.T) {
	r := newMemLog(64)
	var kept [][]byte
	for i := 1; i <= 3000; i++ {
		text := strings.Repeat(strconv.Itoa(i), i%50+1)
		_, d, err := r.Append(wire.Frame{T: wire.FrameChat, From: "alice", ID: uint64(i), Text: text})
		if err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			kept = append(kept, d)
		}
	}
	for _, d := range kept {
		fs, err := wire.DecodeV2(nil, append([]byte(wire.V2Magic), d...)) // d is the line itself: checked as it is now
		if err != nil || len(fs) != 1 {
			t.Fatalf("%q: %v", d, err)
		}
		if i := int(fs[0].ID); fs[0].Seq != uint64(i) || fs[0].Text != strings.Repeat(strconv.Itoa(i), i%50+1) {
			t.Fatalf("event %d changed: %+v", i, fs[0])
		}
	}
	lines, _, _ := r.Range(2990, 3000)
	back := r.Backlog(3, 3000)
	if len(lines) != 11 || len(back) != 3 {
		t.Fatalf("%d lines, %d backlog", len(lines), len(back))
	}
	for i, l := range back {
		fs, err := wire.DecodeV2(nil, append([]byte(wire.V2Magic), l...))
		if err != nil || !fs[0].History || fs[0].Seq != uint64(2998+i) || fs[0].From != "alice" {
			t.Fatalf("backlog %d: %+v, %v", i, fs, err)
		}
	}
}

// TestSnapshotsNeverChange: a snapshot taken earlier keeps its members
// while others join (appended in place) and leave (copied), and readers
// running beside the writer see consistent snapshots (run with -race).
func TestSnapshotsNeverChange(t *testing.T) {
	reg := NewRegistry(RegistryLimits{MaxMembers: 1000}, nil, func(to netip.AddrPort, _ netip.Addr) udpio.Dest { return udpio.Dest{Addr: to} }, nil)
	r := newRoom(wire.RoomMain, newMemLog(16))
	now := time.Now()
	addr := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 2000)
	}
	join := func(i int) *Member {
		m, _, err := reg.Join("m"+strconv.Itoa(i), ProtoClassic, "", addr(i), netip.Addr{}, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := r.join(m); !ok {
			t.Fatalf("member %d joined twice", i)
		}
		return m
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // a reader, as fan-out is
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			seen := map[*Member]bool{}
			for _, m := range r.Members() {
				if m == nil || seen[m] {
					t.Error("a snapshot holds nil or a member twice")
					return
				}
				seen[m] = true
			}
		}
	}()
	var ms []*Member
	for i := 0; i < 300; i++ {
		ms = append(ms, join(i))
	}
	old := r.Members()
	oldCopy := append([]*Member(nil), old...)
	for i := 300; i < 600; i++ {
		ms = append(ms, join(i))
	}
	for i := 0; i < 600; i += 3 {
		if _, ok := r.leave(ms[i]); !ok {
			t.Fatalf("member %d not removed", i)
		}
	}
	close(stop)
	wg.Wait()
	if len(old) != 300 || !equalMembers(old, oldCopy) {
		t.Fatal("an earlier snapshot changed")
	}
	cur := r.Members()
	if len(cur) != 400 || r.Len() != 400 {
		t.Fatalf("%d members, want 400", len(cur))
	}
	for i, m := range cur { // in join order, without those who left
		if want := ms[i/2*3+i%2+1]; m != want {
			t.Fatalf("member %d is %s, want %s", i, m.Name, want.Name)
		}
	}
}

func equalMembers(a, b []*Member) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
