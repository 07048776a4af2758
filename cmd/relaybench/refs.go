//go:build linux

package main

import (
	"bytes"
	"net"
	"net/netip"
)

// The reference relays speak only the classic subset a load run needs:
// "L name" -> "OK" (and membership), "C name text" -> "name says: text" to
// every other member, "Q name" -> "EXIT". No validation, no notices: they are
// yardsticks, not relays.

var (
	verbL = []byte("L ")
	verbC = []byte("C ")
	verbQ = []byte("Q ")
)

// chatLine returns "name says: text" for "C name text", or nil.
func chatLine(p []byte) []byte {
	out, ok := appendChatLine(make([]byte, 0, len(p)+6), p)
	if !ok {
		return nil
	}
	return out
}

// serveNaive: one goroutine, one read and one write syscall per datagram.
// It returns when conn is closed.
func serveNaive(conn *net.UDPConn) {
	members := map[netip.AddrPort]struct{}{}
	buf := make([]byte, 2048)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		p := buf[:n]
		switch {
		case bytes.HasPrefix(p, verbL):
			members[from] = struct{}{}
			_, _ = conn.WriteToUDPAddrPort([]byte("OK"), from)
		case bytes.HasPrefix(p, verbC):
			if _, ok := members[from]; !ok {
				continue
			}
			line := chatLine(p)
			if line == nil {
				continue
			}
			for m := range members {
				if m != from {
					_, _ = conn.WriteToUDPAddrPort(line, m)
				}
			}
		case bytes.HasPrefix(p, verbQ):
			delete(members, from)
			_, _ = conn.WriteToUDPAddrPort([]byte("EXIT"), from)
		}
	}
}
