//go:build linux

package main

import (
	"bytes"
	"errors"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/chatrelay/chatrelay/relay/wire"
	"golang.org/x/sys/unix"
)

// v2CtxLine starts a context line (revision 2: wire.FrameCtx), as the
// relay writes it.
var v2CtxLine = []byte(`{"t":"` + wire.FrameCtx + `"`)

// recvStats is owned by one receiver goroutine; delivered and lastRecv are
// also read atomically while it runs.
type recvStats struct {
	seen      [][]uint64 // [member-local*senders+sender] bitset of seqs
	last      []int64    // last seq per (member-local, sender), -1 none
	lat       hist       // ns
	delivered int64
	lastRecv  int64 // unixnano of the last chat delivery
	dups      int64
	reord     int64
	other     int64
	foreign   int64   // chats from a sender in another room
	byNode    []int64 // deliveries by [sender's relay * nodes + receiver's relay] (layout.nodes > 1)
	self      int64
	stale     int64
	rx        int64
	rxBytes   int64 // what the rx datagrams or reads carried
	closed    int64
}

// receiver owns a share of the member sockets during one step: one
// level-triggered epoll over them and, on readiness, recvmmsg(MSG_DONTWAIT)
// with 64 messages (UDP) or read with a 256 KiB buffer (TCP) until the
// socket is empty, bounded per wake-up. It is pinned to its OS thread so
// that its CPU time can be read from /proc/self/task/TID/stat.
type receiver struct {
	proto     Proto
	ms        []*member
	lay       layout // who sends, and who is in which room
	seqs      int64  // each sender sends seqs 0..seqs-1 in this step
	stepStart int64
	st        recvStats
	tid       int

	cur int   // NATS: the member whose stream natsScan is parsing
	now int64 // receive time of what is being parsed
}

// run adds r's member sockets to a new epoll and sends the outcome on ready
// (nil: r is listening), then reads whatever becomes readable until stop is
// set. dgram is the size of each UDP receive buffer, the largest datagram
// taken whole. It runs on its own OS thread, whose id it leaves in r.tid.
func (r *receiver) run(stop *atomic.Bool, dgram int, ready chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r.tid = unix.Gettid()
	fds := make([]int, len(r.ms))
	for i, m := range r.ms {
		fds[i] = m.fd
	}
	var udp udpBatch
	var tcpBuf []byte
	if r.proto == ProtoNATS {
		tcpBuf = make([]byte, 256<<10)
	} else {
		udp.init(dgram)
	}
	pollReadable(fds, 64, stop, ready, func(ep, li int) {
		if r.proto == ProtoNATS {
			r.readTCP(ep, li, tcpBuf)
		} else {
			r.readUDP(li, &udp)
		}
	})
}

// pollReadable watches fds with a level-triggered epoll and calls read
// with the epoll and the index in fds of each readable one, until stop is
// set (checked at least every 50 ms). It reports on ready whether the epoll
// was set up, before it waits.
func pollReadable(fds []int, max int, stop *atomic.Bool, ready chan<- error, read func(ep, i int)) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		ready <- err
		return
	}
	defer unix.Close(ep)
	for i, fd := range fds {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)} // Fd carries the index in fds
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			ready <- err
			return
		}
	}
	ready <- nil
	events := make([]unix.EpollEvent, max)
	for !stop.Load() {
		n, err := unix.EpollWait(ep, events, 50)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for e := 0; e < n; e++ {
			if i := int(events[e].Fd); i >= 0 && i < len(fds) {
				read(ep, i)
			}
		}
	}
}

// udpBatch is a receiver's recvmmsg vectors.
type udpBatch struct {
	bufs [][]byte
	iovs []unix.Iovec
	hdrs []unix.Mmsghdr
}

// init makes batch buffers of size bytes and points the vectors at them.
func (u *udpBatch) init(size int) {
	u.bufs = make([][]byte, batch)
	u.iovs = make([]unix.Iovec, batch)
	u.hdrs = make([]unix.Mmsghdr, batch)
	for i := range u.bufs {
		u.bufs[i] = make([]byte, size)
		u.iovs[i].Base = &u.bufs[i][0]
		u.iovs[i].SetLen(size)
		u.hdrs[i].Hdr.Iov = &u.iovs[i]
		u.hdrs[i].Hdr.SetIovlen(1)
	}
}

// readUDP takes the datagrams waiting on member li's socket, batch at a
// time with recvmmsg, until it is empty or 64 batches were taken.
func (r *receiver) readUDP(li int, u *udpBatch) {
	fd := r.ms[li].fd
	for rounds := 0; rounds < 64; rounds++ { // bounded per wake-up; level-triggered epoll brings us back
		for i := range u.hdrs {
			u.hdrs[i].Len = 0
		}
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&u.hdrs[0])), batch, unix.MSG_DONTWAIT, 0, 0)
		if errno != 0 || int(n) <= 0 {
			return
		}
		r.now = time.Now().UnixNano()
		for i := 0; i < int(n); i++ {
			r.st.rx++
			r.st.rxBytes += int64(u.hdrs[i].Len)
			r.datagram(li, u.bufs[i][:u.hdrs[i].Len])
		}
		if int(n) < batch {
			return
		}
	}
}

// datagram handles one UDP datagram: a v2 datagram (CR2, then frame lines,
// compact at revision 2: a context line is no frame and is skipped, and a
// chat's text is found without its room) or classic lines ("name says:
// text"), several joined by '\n' when the relay coalesces.
func (r *receiver) datagram(li int, p []byte) {
	v2 := wire.IsV2(p)
	if v2 {
		p = p[len(wire.V2Magic):]
		// A client refuses a datagram of more lines than its revision
		// reads whole (wire.DecodeV2Compact, wire.DecodeV2Wide): so does
		// the tool, or a relay or reference that packs more would be
		// credited with deliveries no client sees.
		if bytes.Count(p, []byte{'\n'}) > wire.MaxLines(r.ms[li].rev) {
			r.st.other++
			return
		}
	}
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if len(line) == 0 {
			continue
		}
		if v2 {
			if bytes.HasPrefix(line, v2CtxLine) {
				continue
			}
			if text, ok := v2ChatText(line); ok {
				r.chat(li, text)
			} else {
				r.st.other++
			}
			continue
		}
		if i := bytes.Index(line, says); i >= 0 {
			r.chat(li, line[i+len(says):])
		} else {
			r.st.other++
		}
	}
}

// chat records one chat text received by member li: a chat of another
// room than li's is foreign, never a delivery.
func (r *receiver) chat(li int, text []byte) {
	st := &r.st
	s, q, t, ok := parseText(text)
	if !ok || s < 0 || s >= r.lay.senders() || q < 0 || q >= r.seqs {
		st.other++ // not a chat this step can have sent: never grows anything
		return
	}
	if t < r.stepStart {
		st.stale++
		return
	}
	from, to := r.lay.sender(s), r.ms[li].idx
	if from == to {
		st.self++
		return
	}
	if r.lay.roomOf(from) != r.lay.roomOf(to) {
		st.foreign++
		return
	}
	k := li*r.lay.perRoom + s%r.lay.perRoom
	set := st.seen[k]
	if set[q/64]&(1<<(q%64)) != 0 {
		st.dups++
		return
	}
	set[q/64] |= 1 << (q % 64)
	if q < st.last[k] {
		st.reord++
	} else {
		st.last[k] = q
	}
	st.lat.add(r.now - t)
	if st.byNode != nil {
		st.byNode[r.lay.nodeOf(from)*r.lay.nodes+r.lay.nodeOf(to)]++
	}
	atomic.AddInt64(&st.delivered, 1)
	atomic.StoreInt64(&st.lastRecv, r.now)
}

// readTCP reads member li's NATS stream until a short read or 16 reads,
// parses what is whole and keeps the rest in the member's partial; a
// connection the server closed is counted and taken out of the epoll ep.
func (r *receiver) readTCP(ep, li int, buf []byte) {
	m := r.ms[li]
	for rounds := 0; rounds < 16; rounds++ {
		n0 := copy(buf, m.partial)
		n, err := unix.Read(m.fd, buf[n0:])
		if n <= 0 {
			if n == 0 && err == nil { // the server closed the connection
				r.st.closed++
				_ = unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, m.fd, nil)
			}
			return
		}
		r.st.rx++
		r.st.rxBytes += int64(n)
		r.now = time.Now().UnixNano()
		r.cur = li
		used := natsScan(buf[:n0+n], r)
		m.partial = append(m.partial[:0], buf[used:n0+n]...)
		if n0+n < len(buf) {
			return // a short read: the socket is empty
		}
	}
}

// natsMsg, natsOther and natsPing make a receiver the natsHandler of the
// stream of member r.cur: a message is a chat, a PING is answered.
func (r *receiver) natsMsg(payload []byte) { r.chat(r.cur, payload) }
func (r *receiver) natsOther()             { r.st.other++ }
func (r *receiver) natsPing() {
	m := r.ms[r.cur]
	m.wmu.Lock()
	_ = writeAll(m.fd, []byte("PONG\r\n"), time.Now().Add(time.Second))
	m.wmu.Unlock()
}
