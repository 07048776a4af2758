package relay

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
)

// Benchmarks of the hot path, with -benchmem. Their numbers, and what
// issue 4 changes about them, are in docs/BENCHMARKS.md.

func BenchmarkParseClassic(b *testing.B) {
	d := []byte("C alice hello everyone, this is a 64-byte chat message for bench\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.ParseClassic(d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseClassicInPlace is the relay's parse: fields alias the
// datagram buffer.
func BenchmarkParseClassicInPlace(b *testing.B) {
	d := []byte("C alice hello everyone, this is a 64-byte chat message for bench\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.ParseClassicInPlace(d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeV2(b *testing.B) {
	d := wire.EncodeV2(&wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, ID: 42, Text: "hello everyone, this is a 64-byte chat message for the bench"})
	b.ReportAllocs()
	var frames []wire.Frame
	for b.Loop() {
		var err error
		if frames, err = wire.DecodeV2(frames[:0], d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeV2InPlace is the relay's decode: strings alias the
// datagram buffer.
func BenchmarkDecodeV2InPlace(b *testing.B) {
	d := wire.EncodeV2(&wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, ID: 42, Text: "hello everyone, this is a 64-byte chat message for the bench"})
	b.ReportAllocs()
	var frames []wire.Frame
	for b.Loop() {
		var err error
		if frames, err = wire.DecodeV2InPlace(frames[:0], d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendChatEvent encodes a chat event as the room does.
func BenchmarkAppendChatEvent(b *testing.B) {
	f := &wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, Seq: 123456, Epoch: "5f3a9c01", From: "alice", ID: 42, Text: "hello everyone, this is a 64-byte chat message for the bench"}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = wire.AppendFrame(wire.AppendV2Header(buf[:0]), f)
	}
}

func BenchmarkRegistryLookup(b *testing.B) {
	r := NewRegistry(RegistryLimits{MaxMembers: 20000}, nil, func(to netip.AddrPort, local netip.Addr) udpio.Dest {
		return udpio.Dest{Addr: to}
	}, nil)
	now := time.Now()
	var addrs []netip.AddrPort
	for i := 0; i < 10000; i++ {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), uint16(1000+i))
		if _, _, err := r.Join("m"+strconv.Itoa(i), ProtoClassic, "", a, netip.Addr{}, now); err != nil {
			b.Fatal(err)
		}
		addrs = append(addrs, a)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if r.Lookup(addrs[i%len(addrs)]) == nil {
			b.Fatal("missing")
		}
		i++
	}
}

// BenchmarkFanout100 broadcasts one chat to a room of 100 classic members,
// each a real loopback socket drained by its own goroutine: one op is one
// broadcast, 99 deliveries (no echo).
func BenchmarkFanout100(b *testing.B) {
	s := newWiredServer(b, Config{Flood: FloodOff()})
	now := time.Now()
	var members []*Member
	for i := 0; i < 100; i++ {
		rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		rc.SetReadBuffer(4 << 20)
		defer rc.Close()
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, err := rc.Read(buf); err != nil {
					return
				}
			}
		}()
		m, _, err := s.reg.Join("m"+strconv.Itoa(i), ProtoClassic, "", rc.LocalAddr().(*net.UDPAddr).AddrPort(), netip.Addr{}, now)
		if err != nil {
			b.Fatal(err)
		}
		s.main.join(m)
		members = append(members, m)
	}
	sender := members[0]
	text := "hello everyone, this is a 64-byte chat message for the benchmark"
	b.ReportAllocs()
	for b.Loop() {
		s.broadcast(s.main, &wire.Frame{T: wire.FrameChat, From: sender.Name, Text: text}, s.chatLine(sender.Name, text), sender, KindChat)
		s.out.Flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*99), "ns/delivery")
}

// benchRoom is a Server set up as Serve would, without the read loop, and
// a room of n loopback members (every other one classic, the rest v2),
// each socket drained by its own goroutine until the benchmark ends.
type benchRoom struct {
	s       *Server
	members []*Member
}

// receive runs msg from from through the server as the read loop and the
// dispatcher would: a pooled buffer, the handler, then the flush after
// the lane's batch. g is the caller's scratch, so the call allocates
// nothing of its own.
func (r *benchRoom) receive(g *datagram, from *Member, msg []byte) {
	buf := r.s.bufs.Get().(*[]byte)
	*g = datagram{buf: buf, n: copy(*buf, msg), from: from.Addr()}
	r.s.handle(g)
	r.s.flushBatch()
}

func newBenchRoom(b testing.TB, n int) *benchRoom {
	b.Helper()
	s := newWiredServer(b, Config{Flood: FloodOff(), MaxPerIP: -1})
	var wg sync.WaitGroup
	var socks []*net.UDPConn
	b.Cleanup(func() { // before the relay's socket closes (newWiredServer's cleanup)
		for _, rc := range socks {
			rc.Close()
		}
		wg.Wait()
	})
	r := &benchRoom{s: s}
	now := time.Now()
	for i := 0; i < n; i++ {
		rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		socks = append(socks, rc)
		rc.SetReadBuffer(4 << 20)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				if _, err := rc.Read(buf); err != nil {
					return
				}
			}
		}()
		proto, token := ProtoClassic, ""
		if i%2 == 1 {
			proto, token = ProtoV2, newToken()
		}
		m, _, err := s.reg.Join("m"+strconv.Itoa(i), proto, token, rc.LocalAddr().(*net.UDPAddr).AddrPort(), netip.Addr{}, now)
		if err != nil {
			b.Fatal(err)
		}
		s.main.join(m)
		r.members = append(r.members, m)
	}
	return r
}

// BenchmarkDatagram handles whole received datagrams through the real
// handler path (Server.handle: dispatch, parse, member lookup, checks,
// sequencing and encoding of the event, fan-out, buffer release) into a
// room of 100 loopback members, 50 classic and 50 v2. One op is one
// received chat; allocs/op is the "per received datagram" number of
// issue 4, the read itself excepted.
func BenchmarkDatagram(b *testing.B) {
	const text = "hello everyone, this is a 64-byte chat message for the benchmark"
	b.Run("classic-chat", func(b *testing.B) {
		r := newBenchRoom(b, 100)
		sender := r.members[0] // classic
		msg := wire.AppendChat(nil, sender.Name, text)
		g := &datagram{}
		b.ReportAllocs()
		for b.Loop() {
			r.receive(g, sender, msg)
		}
		if got := r.s.main.log.Latest(); got != uint64(b.N) {
			b.Fatalf("%d chats broadcast, want %d", got, b.N)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*99), "ns/delivery")
	})
	b.Run("v2-chat", func(b *testing.B) {
		r := newBenchRoom(b, 100)
		sender := r.members[1] // v2
		head := []byte(wire.V2Magic + `{"t":"chat","room":"main","id":`)
		tail := []byte(`,"text":"` + text + `"}` + "\n")
		msg := make([]byte, 0, 256)
		g := &datagram{}
		id := uint64(0)
		b.ReportAllocs()
		for b.Loop() {
			id++
			msg = append(strconv.AppendUint(append(msg[:0], head...), id, 10), tail...)
			r.receive(g, sender, msg)
		}
		if got := r.s.main.log.Latest(); got != id {
			b.Fatalf("%d chats broadcast, want %d", got, id)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/delivery")
	})
	b.Run("v2-ping", func(b *testing.B) {
		// A heartbeat from an up-to-date member: answered with one pong.
		r := newBenchRoom(b, 100)
		sender := r.members[1] // v2
		msg := []byte(wire.V2Magic + `{"t":"ping","room":"main"}` + "\n")
		g := &datagram{}
		b.ReportAllocs()
		for b.Loop() {
			r.receive(g, sender, msg)
		}
	})
}

// newWiredServer is a Server made with cfg whose fan-out sends through a
// real loopback socket (closed when tb ends) and whose registry holds up to
// 1,000 members: enough to drive handlers and the fan-out without Serve.
func newWiredServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { uc.Close() })
	uc.SetWriteBuffer(4 << 20)
	if s.conn, err = udpio.New(uc); err != nil {
		tb.Fatal(err)
	}
	s.fan.conn = s.conn
	s.reg = NewRegistry(RegistryLimits{MaxMembers: 1000}, nil, s.conn.Dest, nil)
	return s
}
