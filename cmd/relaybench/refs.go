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

// batchLoop is what the batch and coalesce references share: one goroutine
// reads 64 datagrams per recvmmsg and builds the fan-out, a second writes it
// with sendmmsg, 64 messages per call; membership is a plain list and map.
type batchLoop struct {
	pc      *ipv4.PacketConn
	list    []refMember // fan-out order
	index   map[netip.AddrPort]int
	pending []ipv4.Message
	out     chan []ipv4.Message
	done    chan struct{}

	// endOfBatch runs after each read batch's datagrams were handled: the
	// reference adds its fan-out to pending there, then calls flush.
	endOfBatch func()
}

type refMember struct {
	ap   netip.AddrPort
	addr *net.UDPAddr
}

func newBatchLoop(conn *net.UDPConn) *batchLoop {
	b := &batchLoop{
		pc:    ipv4.NewPacketConn(conn),
		index: map[netip.AddrPort]int{},
		out:   make(chan []ipv4.Message, 256),
		done:  make(chan struct{}),
	}
	go b.write()
	return b
}

func (b *batchLoop) write() {
	defer close(b.done)
	for msgs := range b.out {
		for len(msgs) > 0 {
			n, err := b.pc.WriteBatch(msgs, 0)
			if err != nil || n <= 0 {
				n = max(n, 1) // skip the message that failed (e.g. closed socket)
			}
			msgs = msgs[n:]
		}
	}
}

// run reads batches until the socket is closed; chat gets each batch's
// chats (their senders are members). It stops the writer on return.
func (b *batchLoop) run(chat func(from netip.AddrPort, p []byte)) {
	defer func() { close(b.out); <-b.done }()
	rb := make([]ipv4.Message, batch)
	for i := range rb {
		rb[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	for {
		n, err := b.pc.ReadBatch(rb, 0)
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
				if _, ok := b.index[from]; !ok {
					b.index[from] = len(b.list)
					b.list = append(b.list, refMember{from, ua})
				}
				b.pending = append(b.pending, ipv4.Message{Buffers: [][]byte{[]byte("OK")}, Addr: ua})
			case bytes.HasPrefix(p, verbC):
				if _, ok := b.index[from]; ok {
					chat(from, p)
				}
			case bytes.HasPrefix(p, verbQ):
				if j, ok := b.index[from]; ok {
					last := len(b.list) - 1
					b.list[j] = b.list[last]
					b.index[b.list[j].ap] = j
					b.list = b.list[:last]
					delete(b.index, from)
				}
				b.pending = append(b.pending, ipv4.Message{Buffers: [][]byte{[]byte("EXIT")}, Addr: ua})
			}
		}
		b.endOfBatch()
	}
}

// flush hands pending to the writer, 64 messages per sendmmsg.
func (b *batchLoop) flush() {
	for len(b.pending) > 0 {
		k := min(len(b.pending), batch)
		b.out <- b.pending[:k:k]
		b.pending = b.pending[k:]
	}
	b.pending = nil
}

// serveBatch: the kernel-limit stand-in. Each broadcast line is encoded once
// and shared by all its messages. It returns when conn is closed.
func serveBatch(conn *net.UDPConn) {
	b := newBatchLoop(conn)
	b.endOfBatch = b.flush
	b.run(func(from netip.AddrPort, p []byte) {
		line := chatLine(p)
		if line == nil {
			return
		}
		bufs := [][]byte{line}
		for _, m := range b.list {
			if m.ap != from {
				b.pending = append(b.pending, ipv4.Message{Buffers: bufs, Addr: m.addr})
			}
		}
	})
}

// pendingChat is a chat line waiting for the end of its read batch.
type pendingChat struct {
	from netip.AddrPort
	line []byte
}

// packLines packs the lines of chats not sent by skip, in order, into
// datagrams of at most budget bytes, lines joined by '\n' (a line longer
// than budget goes alone). The datagrams share one new buffer.
func packLines(chats []pendingChat, skip netip.AddrPort, budget int) [][]byte {
	total := 0
	for _, c := range chats {
		total += len(c.line) + 1
	}
	buf := make([]byte, 0, total)
	var out [][]byte
	start := 0
	for _, c := range chats {
		if c.from == skip {
			continue
		}
		if n := len(buf) - start; n > 0 && n+1+len(c.line) > budget {
			out = append(out, buf[start:len(buf):len(buf)])
			start = len(buf)
		}
		if len(buf) > start {
			buf = append(buf, '\n')
		}
		buf = append(buf, c.line...)
	}
	if len(buf) > start {
		out = append(out, buf[start:len(buf):len(buf)])
	}
	return out
}

// serveCoalesce is the batch loop that, per read batch, packs the chats
// pending for each recipient into datagrams of at most budget bytes and
// sends them with sendmmsg: an upper bound for what framing costs. It never
// waits for more: it packs only what one read batch returned. Recipients
// that sent nothing in the batch share the same datagrams; each sender gets
// its own packing without its lines. It returns when conn is closed.
func serveCoalesce(conn *net.UDPConn, budget int) {
	b := newBatchLoop(conn)
	var chats []pendingChat
	b.endOfBatch = func() {
		if len(chats) > 0 {
			b.fanOutPacked(chats, budget)
			clear(chats)
			chats = chats[:0]
		}
		b.flush()
	}
	b.run(func(from netip.AddrPort, p []byte) {
		if line := chatLine(p); line != nil {
			chats = append(chats, pendingChat{from, line})
		}
	})
}

func (b *batchLoop) fanOutPacked(chats []pendingChat, budget int) {
	wrap := func(dgrams [][]byte) [][][]byte {
		out := make([][][]byte, len(dgrams))
		for i, d := range dgrams {
			out[i] = [][]byte{d}
		}
		return out
	}
	common := wrap(packLines(chats, netip.AddrPort{}, budget))
	own := map[netip.AddrPort][][][]byte{}
	for _, c := range chats {
		if _, ok := own[c.from]; !ok {
			own[c.from] = wrap(packLines(chats, c.from, budget))
		}
	}
	for _, m := range b.list {
		dgrams, ok := own[m.ap]
		if !ok {
			dgrams = common
		}
		for _, d := range dgrams {
			b.pending = append(b.pending, ipv4.Message{Buffers: d, Addr: m.addr})
		}
	}
}
