//go:build linux

package udpio_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
)

// listen opens a UDP socket on addr and wraps it with udpio.New.
func listen(t *testing.T, network, addr string) *udpio.Conn {
	t.Helper()
	uc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	c, err := udpio.New(uc)
	if err != nil {
		uc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// deadPort returns an address on ip where nobody listens: a port that was
// just free.
func deadPort(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	ap := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	uc.Close()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// send sends b to dst, retrying once when the socket returns a pending
// error that an earlier datagram's ICMP left (see EnableRecvErr).
func send(t *testing.T, c *udpio.Conn, b []byte, dst netip.AddrPort) {
	t.Helper()
	d := c.Dest(dst, netip.Addr{})
	err := c.Send(b, &d)
	if errors.Is(err, syscall.ECONNREFUSED) {
		err = c.Send(b, &d)
	}
	if err != nil {
		t.Fatalf("Send to %v: %v", dst, err)
	}
}

type queuedErr struct {
	dst   netip.AddrPort
	errno syscall.Errno
}

// waitErrors drains c until want errors have come or 2 s pass.
func waitErrors(t *testing.T, c *udpio.Conn, want int) []queuedErr {
	t.Helper()
	var got []queuedErr
	deadline := time.Now().Add(2 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		n := c.DrainErrors(func(dst netip.AddrPort, errno syscall.Errno) {
			got = append(got, queuedErr{dst, errno})
		})
		if n == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	return got
}

func TestDrainErrorsPortUnreachable(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	if err := c.EnableRecvErr(); err != nil {
		t.Fatal(err)
	}
	if n := c.DrainErrors(func(netip.AddrPort, syscall.Errno) { t.Error("error on a fresh socket") }); n != 0 {
		t.Fatalf("DrainErrors on a fresh socket = %d", n)
	}

	dead := deadPort(t, "127.0.0.1")
	d := c.Dest(dead, netip.Addr{})
	if err := c.Send([]byte("anyone?"), &d); err != nil {
		t.Fatalf("Send: %v", err)
	}

	// The documented behaviour: the pending error surfaces on a plain read.
	buf, oob := make([]byte, 64), make([]byte, udpio.OOBSize)
	refused := false
	for deadline := time.Now().Add(2 * time.Second); !refused && time.Now().Before(deadline); {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, _, _, err := c.Read(buf, oob)
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			refused = true
		case errors.Is(err, os.ErrDeadlineExceeded):
		default:
			t.Fatalf("Read before the drain: %v", err)
		}
	}
	if !refused {
		t.Fatal("Read never returned ECONNREFUSED")
	}

	got := waitErrors(t, c, 1)
	if len(got) != 1 || got[0] != (queuedErr{dead, syscall.ECONNREFUSED}) {
		t.Fatalf("DrainErrors reported %v, want [{%v ECONNREFUSED}]", got, dead)
	}
	if n := c.DrainErrors(func(netip.AddrPort, syscall.Errno) {}); n != 0 {
		t.Errorf("second drain read %d more", n)
	}

	// Normal datagrams still arrive, with no stale error in front.
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	for _, msg := range []string{"hello", "again"} {
		if _, err := peer.WriteTo([]byte(msg), c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, _, err := c.Read(buf, oob)
		if err != nil {
			t.Fatalf("Read after the drain: %v", err)
		}
		if string(buf[:n]) != msg || from != peer.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Errorf("Read = %q from %v, want %q from %v", buf[:n], from, msg, peer.LocalAddr())
		}
	}
}

// TestDrainErrorsQueuesSeveral: errors for several destinations queue up
// and are all read by one drain, while Read keeps returning datagrams.
func TestDrainErrorsQueuesSeveral(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	if err := c.EnableRecvErr(); err != nil {
		t.Fatal(err)
	}
	want := map[netip.AddrPort]bool{}
	for range 3 {
		dead := deadPort(t, "127.0.0.1")
		want[dead] = true
		send(t, c, []byte("x"), dead)
	}
	got := waitErrors(t, c, len(want))
	for _, e := range got {
		if !want[e.dst] || e.errno != syscall.ECONNREFUSED {
			t.Errorf("unexpected error %v", e)
		}
		delete(want, e.dst)
	}
	if len(want) != 0 {
		t.Errorf("not reported: %v", want)
	}
}

// TestDrainErrorsDualStack: a socket on [::] reports IPv4 (unmapped) and
// IPv6 destinations.
func TestDrainErrorsDualStack(t *testing.T) {
	c := listen(t, "udp", "[::]:0")
	if err := c.EnableRecvErr(); err != nil {
		t.Fatal(err)
	}
	dead4 := deadPort(t, "127.0.0.1")
	dead6 := deadPort(t, "::1")
	for _, dead := range []netip.AddrPort{dead4, dead6} {
		send(t, c, []byte("x"), dead)
	}
	got := waitErrors(t, c, 2)
	want := map[queuedErr]bool{{dead4, syscall.ECONNREFUSED}: true, {dead6, syscall.ECONNREFUSED}: true}
	for _, e := range got {
		if !want[e] {
			t.Errorf("unexpected error %v", e)
		}
		delete(want, e)
	}
	if len(want) != 0 {
		t.Errorf("not reported: %v (got %v)", want, got)
	}
}

// TestSendSurvivesPendingError: after an ICMP error about one peer, the
// kernel returns it from the next socket call, whatever it is; Send must
// still deliver to a live peer (it retries once), and the error stays
// queued for DrainErrors.
func TestSendSurvivesPendingError(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	if err := c.EnableRecvErr(); err != nil {
		t.Fatal(err)
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	live := c.Dest(peer.LocalAddr().(*net.UDPAddr).AddrPort(), netip.Addr{})

	send(t, c, []byte("x"), deadPort(t, "127.0.0.1"))
	// Wait until the ICMP error is queued (peeking does not clear it).
	deadline := time.Now().Add(5 * time.Second)
	for !udpio.PeekErrQueue(c) {
		if time.Now().After(deadline) {
			t.Fatal("no ICMP error queued")
		}
		time.Sleep(time.Millisecond)
	}
	if err := c.Send([]byte("live"), &live); err != nil {
		t.Fatalf("Send after an ICMP error about another peer: %v", err)
	}
	buf := make([]byte, 64)
	peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "live" {
		t.Fatalf("peer read %q, %v; want the datagram", buf[:n], err)
	}
	if got := waitErrors(t, c, 1); len(got) != 1 {
		t.Errorf("DrainErrors after the send: %v", got)
	}
}

// TestDrainErrorsWithoutRecvErr: without EnableRecvErr nothing is queued.
func TestDrainErrorsWithoutRecvErr(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	d := c.Dest(deadPort(t, "127.0.0.1"), netip.Addr{})
	if err := c.Send([]byte("x"), &d); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := c.DrainErrors(func(netip.AddrPort, syscall.Errno) {}); n != 0 {
		t.Errorf("DrainErrors without RecvErr = %d", n)
	}
}

// TestDrainErrorsWhileReading: DrainErrors does not wait for a Read that is
// blocked in another goroutine.
func TestDrainErrorsWhileReading(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	if err := c.EnableRecvErr(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf, oob := make([]byte, 64), make([]byte, udpio.OOBSize)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, _, err := c.Read(buf, oob); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond) // let the reader block
	start := time.Now()
	c.DrainErrors(func(netip.AddrPort, syscall.Errno) {})
	if d := time.Since(start); d > time.Second {
		t.Errorf("DrainErrors waited %v for the blocked reader", d)
	}
	c.SetReadDeadline(time.Unix(1, 0))
	<-done
}
