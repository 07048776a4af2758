//go:build linux

package udpio_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
)

// A Batch delivers every datagram, each with its own bytes, to its own
// destination, in the order added per destination, across many sendmmsg
// calls, with batching on and off; and it counts what the kernel refused.
func TestBatchDeliversEachDatagramToItsDestination(t *testing.T) {
	for _, batch := range []bool{true, false} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			c, err := udpio.NewOpts(uc, udpio.Options{Batch: batch})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var peers []*net.UDPConn
			var dests []udpio.Dest
			for range 3 {
				p, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				p.SetReadBuffer(1 << 20)
				peers = append(peers, p)
				dests = append(dests, c.Dest(p.LocalAddr().(*net.UDPAddr).AddrPort(), netip.Addr{}))
			}
			b := c.NewBatch()
			const n = 150 // more than two batches
			payloads := make([][]byte, n)
			for i := range n {
				payloads[i] = fmt.Appendf(nil, "datagram %d for %d", i, i%3)
				b.Add(payloads[i], &dests[i%3], 2)
			}
			b.Flush()
			if b.Failed != 0 || b.Lost != 0 {
				t.Fatalf("failed %d, lost %d", b.Failed, b.Lost)
			}
			buf := make([]byte, 64)
			for i := range n {
				p := peers[i%3]
				p.SetReadDeadline(time.Now().Add(2 * time.Second))
				k, err := p.Read(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if want := fmt.Sprintf("datagram %d for %d", i, i%3); string(buf[:k]) != want {
					t.Fatalf("got %q, want %q", buf[:k], want)
				}
			}
		})
	}
}

// A datagram the kernel refuses (port 0 is EINVAL) is counted with its tag,
// and the ones after it in the same system call still go.
func TestBatchCountsRefusedDatagrams(t *testing.T) {
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := udpio.New(uc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	good := c.Dest(p.LocalAddr().(*net.UDPAddr).AddrPort(), netip.Addr{})
	bad := c.Dest(netip.MustParseAddrPort("127.0.0.1:0"), netip.Addr{})
	b := c.NewBatch()
	b.Add([]byte("one"), &good, 1)
	b.Add([]byte("lost"), &bad, 7)
	b.Add([]byte("two"), &good, 1)
	b.Flush()
	if b.Failed != 1 || b.Lost != 7 {
		t.Fatalf("failed %d, lost %d; want 1 and 7", b.Failed, b.Lost)
	}
	buf := make([]byte, 16)
	for _, want := range []string{"one", "two"} {
		p.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, err := p.Read(buf)
		if err != nil || string(buf[:k]) != want {
			t.Fatalf("got %q, %v; want %q", buf[:k], err, want)
		}
	}
	b.Reset()
	if b.Failed != 0 || b.Lost != 0 {
		t.Fatal("Reset left counts")
	}
}
