//go:build linux

package udpio_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
)

// A reuseport group spreads senders over its sockets, and a second group
// (or a single socket) on the same port is refused as a taken port, not
// silently let in to share the traffic.
func TestListenGroup(t *testing.T) {
	group, err := udpio.Listen("127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range group {
			c.Close()
		}
	}()
	if len(group) != 2 {
		t.Fatalf("%d sockets, want 2", len(group))
	}
	addr := group[0].LocalAddr().String()
	if got := group[1].LocalAddr().String(); got != addr {
		t.Fatalf("group on %s and %s, want one address", addr, got)
	}

	for _, n := range []int{1, 2} {
		again, err := udpio.Listen(addr, n)
		if !errors.Is(err, syscall.EADDRINUSE) {
			for _, c := range again {
				c.Close()
			}
			t.Fatalf("Listen(%s, %d) on a live group: err %v, want EADDRINUSE", addr, n, err)
		}
	}

	// 32 senders: the kernel hashes each to one socket; both get some
	// (all on one has probability 2^-31).
	const senders = 32
	writeFromNewPorts(t, addr, senders, "x")
	got := make([]int, len(group))
	total := 0
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 16)
	for total < senders && time.Now().Before(deadline) {
		for i, c := range group {
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := c.Read(buf); err == nil {
				got[i]++
				total++
			}
		}
	}
	if total != senders || got[0] == 0 || got[1] == 0 {
		t.Fatalf("datagrams per socket %v, want all %d spread over both", got, senders)
	}
}

func TestListenRefusesTakenPort(t *testing.T) {
	taken, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if _, err := udpio.Listen(taken.LocalAddr().String(), 2); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("err %v, want EADDRINUSE", err)
	}
}

// With one socket (the default) each batch sends on a socket of its own in
// the relay's reuseport group: what it sends leaves from the relay's
// address, every datagram sent to that address still reaches the relay's
// socket and none a sender's, and the port is still refused to anyone else.
func TestOneSocketsSendersReceiveNothing(t *testing.T) {
	c, addr, peer, d := groupOfOne(t)
	const batches = 3
	for i := range batches {
		b := c.NewBatch()
		b.Add([]byte("from a sender"), &d, 0)
		b.Flush()
		if b.Failed != 0 {
			t.Fatalf("batch %d: %d failed", i, b.Failed)
		}
		buf := make([]byte, 32)
		peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != "from a sender" || from.String() != addr {
			t.Fatalf("batch %d: got %q from %v (%v), want it from %s", i, buf[:n], from, err, addr)
		}
	}
	if _, senders := udpio.SenderQueued(c); senders != batches {
		t.Fatalf("%d sender sockets, want one per batch (%d)", senders, batches)
	}

	const clients = 64 // each its own port: the kernel would hash them over the group
	writeFromNewPorts(t, addr, clients, "to the relay")
	buf, oob := make([]byte, 32), make([]byte, udpio.OOBSize)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range clients {
		if n, _, _, err := c.Read(buf, oob); err != nil || string(buf[:n]) != "to the relay" {
			t.Fatalf("datagram %d of %d: %q, %v", i+1, clients, buf[:n], err)
		}
	}
	if queued, _ := udpio.SenderQueued(c); queued != 0 {
		t.Fatalf("%d sender sockets received datagrams, want none", queued)
	}

	if again, err := udpio.Listen(addr, 1); !errors.Is(err, syscall.EADDRINUSE) {
		for _, uc := range again {
			uc.Close()
		}
		t.Fatalf("Listen(%s, 1) on a live relay: err %v, want EADDRINUSE", addr, err)
	}
}

// Batches of one slot (NewBatchOn) send from one socket of the relay's
// group, from the relay's address, in the order they send; another slot,
// or a batch of its own (NewBatch), gets a socket of its own.
func TestBatchesOfOneSlotShareASocket(t *testing.T) {
	c, addr, peer, d := groupOfOne(t)
	batches := []*udpio.Batch{c.NewBatchOn(0), c.NewBatchOn(1), c.NewBatchOn(0), c.NewBatch(), c.NewBatchOn(1)}
	for i, b := range batches {
		b.Add([]byte(fmt.Sprint("datagram ", i)), &d, 0)
		b.Flush()
		if b.Failed != 0 {
			t.Fatalf("batch %d: %d failed", i, b.Failed)
		}
	}
	buf := make([]byte, 32)
	for i := range batches {
		peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if want := fmt.Sprint("datagram ", i); err != nil || string(buf[:n]) != want || from.String() != addr {
			t.Fatalf("got %q from %v (%v), want %q from %s", buf[:n], from, err, want, addr)
		}
	}
	if _, senders := udpio.SenderQueued(c); senders != 3 {
		t.Fatalf("%d sender sockets, want 3: slot 0, slot 1 and the batch of its own", senders)
	}
}

// groupOfOne is a relay's socket as Listen makes it with one reader (a
// reuseport group of one), its address, a peer on loopback and the peer
// as the relay's destination; all closed when t ends.
func groupOfOne(t *testing.T) (c *udpio.Conn, addr string, peer *net.UDPConn, d udpio.Dest) {
	t.Helper()
	ucs, err := udpio.Listen("127.0.0.1:0", 1)
	if err != nil {
		t.Fatal(err)
	}
	addr = ucs[0].LocalAddr().String()
	if c, err = udpio.New(ucs[0]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if peer, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return c, addr, peer, c.Dest(peer.LocalAddr().(*net.UDPAddr).AddrPort(), netip.Addr{})
}

// writeFromNewPorts sends payload to addr n times, each from a new socket
// (a port of its own, which a reuseport group hashes on its own).
func writeFromNewPorts(t *testing.T, addr string, n int, payload string) {
	t.Helper()
	for range n {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(payload)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}
