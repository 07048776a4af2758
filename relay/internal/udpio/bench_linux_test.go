//go:build linux

package udpio_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
)

// sinks opens n loopback sockets nobody reads (their buffers fill and the
// kernel drops, which costs the sender the same) and returns their
// destinations prepared by c.
func sinks(b *testing.B, c *udpio.Conn, n int) []*udpio.Dest {
	dests := make([]*udpio.Dest, n)
	for i := range dests {
		uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { uc.Close() })
		d := c.Dest(uc.LocalAddr().(*net.UDPAddr).AddrPort(), netip.Addr{})
		dests[i] = &d
	}
	return dests
}

// BenchmarkSendAll100 sends one 64-byte datagram to 100 members per op:
// batched (sendmmsg, 64 per call) against one sendmsg per member. Both
// must show 0 allocs/op.
func BenchmarkSendAll100(b *testing.B) {
	for _, mode := range []struct {
		name  string
		batch bool
	}{{"sendmmsg", true}, {"sendmsg", false}} {
		b.Run(mode.name, func(b *testing.B) {
			uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			c, err := udpio.NewOpts(uc, udpio.Options{Batch: mode.batch})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			dests := sinks(b, c, 100)
			msg := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if failed := c.SendAll(msg, dests); failed != 0 {
					b.Fatalf("%d sends failed", failed)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(dests)), "ns/delivery")
		})
	}
}

// BenchmarkReaderBatch reads 64 datagrams per op from one Reader; x/net's
// ReadBatch allocates each sender's address (2 allocations per datagram),
// the Reader itself nothing.
func BenchmarkReaderBatch(b *testing.B) {
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	_ = uc.SetReadBuffer(4 << 20)
	c, err := udpio.New(uc)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	txc, err := udpio.New(tx)
	if err != nil {
		b.Fatal(err)
	}
	to := txc.Dest(uc.LocalAddr().(*net.UDPAddr).AddrPort(), netip.Addr{})
	r := c.NewReader()
	pkts := make([]udpio.Packet, udpio.ReadBatch)
	for i := range pkts {
		pkts[i].Buf = make([]byte, 1025)
	}
	dests := make([]*udpio.Dest, udpio.ReadBatch)
	for i := range dests {
		dests[i] = &to
	}
	msg := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		txc.SendAll(msg, dests)
		b.StartTimer()
		for got := 0; got < len(dests); {
			n, err := r.Read(pkts[got:])
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}
