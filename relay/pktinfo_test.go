package relay_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// A client on a multi-homed host with a connected socket accepts replies
// only from the address it sent to. On a wildcard listen address the relay
// must answer from that address, not from the kernel's choice. 127.0.0.2 is
// a second local address (all of 127/8 is local on Linux), and for a
// destination of 127.0.0.1 the kernel would pick 127.0.0.1 as the source.
func TestRepliesLeaveFromTheAddressTheRequestWasSentTo(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", "[::]:0"} {
		t.Run(listen, func(t *testing.T) {
			r := relaytest.StartOn(t, listen)
			second := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), r.Addr.Port())
			// Bind the client to 127.0.0.1, connected to 127.0.0.2.
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, net.UDPAddrFromAddrPort(second))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			alice := &client{t: t, conn: c, buf: make([]byte, 4096)}
			alice.login("alice") // fails unless the OK comes from 127.0.0.2
			bob := dial(t, r).login("bob")
			alice.expect("bob joined the chat room") // fan-out uses alice's address too
			bob.send("C bob hi")
			alice.expect("bob says: hi")
		})
	}
}
