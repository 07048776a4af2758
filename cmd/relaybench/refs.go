//go:build linux

package main

import (
	"bytes"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
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
	rest := p[2:]
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return nil
	}
	out := make([]byte, 0, len(rest)+6)
	out = append(out, rest[:sp]...)
	out = append(out, " says: "...)
	return append(out, rest[sp+1:]...)
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

// serveBatch: the kernel-limit stand-in. One goroutine reads 64 datagrams per
// recvmmsg and builds the fan-out; a second writes it with sendmmsg, 64
// messages per call. Each broadcast line is encoded once and shared by all its
// messages. It returns when conn is closed.
func serveBatch(conn *net.UDPConn) {
	pc := ipv4.NewPacketConn(conn)
	type member struct {
		ap   netip.AddrPort
		addr *net.UDPAddr
	}
	var list []member // fan-out order
	index := map[netip.AddrPort]int{}
	out := make(chan []ipv4.Message, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for msgs := range out {
			for len(msgs) > 0 {
				n, err := pc.WriteBatch(msgs, 0)
				if err != nil || n <= 0 {
					n = max(n, 1) // skip the message that failed (e.g. closed socket)
				}
				msgs = msgs[n:]
			}
		}
	}()
	defer func() { close(out); <-done }()

	rb := make([]ipv4.Message, batch)
	for i := range rb {
		rb[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	var pending []ipv4.Message
	flush := func() {
		for len(pending) > 0 {
			k := min(len(pending), batch)
			out <- pending[:k:k]
			pending = pending[k:]
		}
		pending = nil
	}
	for {
		n, err := pc.ReadBatch(rb, 0)
		if err != nil {
			return
		}
		for i := 0; i < n; i++ {
			p := rb[i].Buffers[0][:rb[i].N]
			ua, _ := rb[i].Addr.(*net.UDPAddr)
			if ua == nil {
				continue
			}
			from := ua.AddrPort()
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			switch {
			case bytes.HasPrefix(p, verbL):
				if _, ok := index[from]; !ok {
					index[from] = len(list)
					list = append(list, member{from, ua})
				}
				pending = append(pending, ipv4.Message{Buffers: [][]byte{[]byte("OK")}, Addr: ua})
			case bytes.HasPrefix(p, verbC):
				if _, ok := index[from]; !ok {
					continue
				}
				line := chatLine(p)
				if line == nil {
					continue
				}
				bufs := [][]byte{line}
				for _, m := range list {
					if m.ap != from {
						pending = append(pending, ipv4.Message{Buffers: bufs, Addr: m.addr})
					}
				}
			case bytes.HasPrefix(p, verbQ):
				if j, ok := index[from]; ok {
					last := len(list) - 1
					list[j] = list[last]
					index[list[j].ap] = j
					list = list[:last]
					delete(index, from)
				}
				pending = append(pending, ipv4.Message{Buffers: [][]byte{[]byte("EXIT")}, Addr: ua})
			}
		}
		flush()
	}
}
