//go:build linux

package udpio_test

import (
	"errors"
	"net"
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
	for i := 0; i < senders; i++ {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
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
