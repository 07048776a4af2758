package relay

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
)

// Benchmarks of the hot path, with -benchmem. Their numbers, and what
// issue 4 changes about them, are in docs/BENCHMARKS.md.

func BenchmarkParseClassic(b *testing.B) {
	d := []byte("C alice hello everyone, this is a 64-byte chat message for bench\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseClassic(d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeV2(b *testing.B) {
	d := EncodeV2(&Frame{T: FrameChat, Room: RoomMain, ID: 42, Text: "hello everyone, this is a 64-byte chat message for the bench"})
	b.ReportAllocs()
	var frames []Frame
	for b.Loop() {
		var err error
		if frames, err = DecodeV2(frames[:0], d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRegistryLookup(b *testing.B) {
	r := NewRegistry(RegistryLimits{MaxMembers: 20000}, func(to netip.AddrPort, local netip.Addr) udpio.Dest {
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
	s, err := New(Config{Flood: FloodOff()})
	if err != nil {
		b.Fatal(err)
	}
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer uc.Close()
	uc.SetWriteBuffer(4 << 20)
	if s.conn, err = udpio.New(uc); err != nil {
		b.Fatal(err)
	}
	s.reg = NewRegistry(RegistryLimits{MaxMembers: 1000}, s.conn.Dest, nil)
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
		s.reg.Activate(m)
		members = append(members, m)
	}
	sender := members[0]
	text := "hello everyone, this is a 64-byte chat message for the benchmark"
	b.ReportAllocs()
	for b.Loop() {
		s.broadcast(&Frame{T: FrameChat, From: sender.Name, Text: text}, classicLine(s.words().chat, sender.Name, text), sender, KindChat)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*99), "ns/delivery")
}
