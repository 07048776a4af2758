package relay

import (
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
)

// heapPerMember logs n members in through Registry.Join and Activate, half
// classic and half v2, each with a destination prepared by a real socket
// as the server's would be, and returns the live heap they hold, in bytes
// per member (HeapAlloc after a GC, before and after).
func heapPerMember(tb testing.TB, n int) float64 {
	tb.Helper()
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	defer uc.Close()
	conn, err := udpio.New(uc)
	if err != nil {
		tb.Fatal(err)
	}
	tokens := make([]string, n) // made before: they belong to the measurement only once held
	for i := range tokens {
		if i%2 == 1 {
			tokens[i] = newToken()
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := NewRegistry(RegistryLimits{MaxMembers: n}, nil, conn.Dest, nil)
	room := newRoom(wire.RoomMain, newMemLog(16))
	now := time.Now()
	for i := 0; i < n; i++ {
		// Distinct addresses spread over many IPs, as a real room's are.
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(1024+i%50000))
		proto := ProtoClassic
		if tokens[i] != "" {
			proto = ProtoV2
		}
		m, _, err := r.Join("member"+strconv.Itoa(i), proto, tokens[i], a, netip.Addr{}, now)
		if err != nil {
			tb.Fatal(err)
		}
		if proto == ProtoV2 { // revision 1, as chatcli: a session with an inbox
			m.rev.Store(wire.Rev)
			m.inbox.Store(newInbox(newMemLog(4096), m))
		}
		room.join(m)
	}
	tokens = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := room.Len(); got != n {
		tb.Fatalf("%d members visible, want %d", got, n)
	}
	runtime.KeepAlive(r)
	runtime.KeepAlive(room)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// BenchmarkHeapPerMember reports the heap an idle member costs in a room
// of 100,000 (issue 4's target: at most 1 KiB). One op builds the room.
func BenchmarkHeapPerMember(b *testing.B) {
	var per float64
	for i := 0; i < b.N; i++ {
		per = heapPerMember(b, 100_000)
	}
	b.ReportMetric(per, "heapB/member")
}
