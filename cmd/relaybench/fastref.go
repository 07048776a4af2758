//go:build linux

package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The batch and coalesce references are the strongest minimal loops we can
// write for one datagram per delivery (batch) and for packing (coalesce),
// so that a relay measured against them is measured against the kernel:
//
//   - raw recvmmsg/sendmmsg through unix.Syscall6 with our own mmsghdr
//     arrays, never through net.UDPConn or x/net, whose calls take the
//     descriptor's read or write lock;
//   - one reader thread and --ref-senders sender threads (6 by default:
//     more than the CPUs, since a sender is preempted inside sendmmsg, where
//     the kernel also delivers on loopback; runtime.LockOSThread), each
//     sender with its own dup of the socket, so that the sendmmsg calls
//     really run at once; member i belongs to sender i mod the senders,
//     which a login never changes, so a member's lines stay in order;
//   - a member's sockaddr is resolved once, at login; each sender keeps one
//     prebuilt message array and only points its entries at a sockaddr and
//     a line;
//   - a chat line is encoded once per chat (coalesce: each packing once per
//     read batch) into the batch's arena, shared by all senders;
//   - up to 1,024 messages per recvmmsg and per sendmmsg, a member's
//     datagrams of a read batch back to back (member by member, not chat
//     by chat);
//   - 16 MiB socket buffers, forced (SO_RCVBUFFORCE/SO_SNDBUFFORCE) when
//     permitted;
//   - the reader hands a batch to a sleeping sender with an eventfd, a
//     direct kernel wake-up instead of the Go scheduler's hand-off to a
//     locked thread.
//   - every thread in SCHED_BATCH (serveRef, relay/sched), as the relay
//     daemon runs by default: a woken thread does not preempt a sender
//     in sendmmsg, 4-5% less CPU per room10 delivery here.

const (
	fastBatch = 1024     // messages per recvmmsg and per sendmmsg
	fastBuf   = 16 << 20 // socket buffers
	fastJobs  = 32       // read batches in flight between reader and senders
	fastDgram = 2048     // largest datagram read
)

// fastShards is how many sender threads the loops run (--ref-senders).
var fastShards = defaultRefSenders

// defaultRefSenders is --ref-senders' default: the most of 2, 3, 4, 6 and 8
// measured on the 2-core machine, for batch and coalesce alike (more
// senders than CPUs keep both CPUs in sendmmsg: docs/BENCHMARKS.md).
const defaultRefSenders = 6

// fastMember is a logged-in member: its sockaddr, resolved at login.
type fastMember struct {
	sa unix.RawSockaddrInet4
}

// span is a slice of a job's arena.
type span struct{ off, n int32 }

// memberPack says that member idx gets packing pack (coalesce).
type memberPack struct{ idx, pack int32 }

// fastJob is one read batch's fan-out, shared read-only by all senders.
type fastJob struct {
	stop    bool
	members []fastMember // the membership when the batch was read
	arena   []byte       // encoded lines (batch) or packed datagrams (coalesce)
	spans   []span       // batch: one per chat; coalesce: datagrams, packing by packing
	iovs    []unix.Iovec // one per span, pointing into arena
	from    []int32      // batch: the sending member's index per chat
	packs   []int32      // coalesce: packing p is spans[packs[p]:packs[p+1]]; 0 is the common one
	special []memberPack // coalesce: senders of the batch, by index, with their own packing
	refs    atomic.Int32
}

func (j *fastJob) reset() {
	j.arena, j.spans, j.iovs = j.arena[:0], j.spans[:0], j.iovs[:0]
	j.from, j.packs, j.special = j.from[:0], j.packs[:0], j.special[:0]
	j.members = nil
}

// finish points the iovecs at the arena once it no longer grows.
func (j *fastJob) finish() {
	for _, s := range j.spans {
		var v unix.Iovec
		if s.n > 0 {
			v.Base = &j.arena[s.off]
		}
		v.SetLen(int(s.n))
		j.iovs = append(j.iovs, v)
	}
}

// fastQueue hands jobs to one sender; the sender sleeps on efd when the
// queue is empty, and the reader writes efd only then.
type fastQueue struct {
	mu       sync.Mutex
	jobs     []*fastJob
	sleeping bool
	efd      int
}

func (q *fastQueue) push(j *fastJob) {
	q.mu.Lock()
	q.jobs = append(q.jobs, j)
	wake := q.sleeping
	q.sleeping = false
	q.mu.Unlock()
	if wake {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		for {
			if _, err := unix.Write(q.efd, one[:]); err != unix.EINTR {
				return
			}
		}
	}
}

func (q *fastQueue) pop() *fastJob {
	var buf [8]byte
	for {
		q.mu.Lock()
		if len(q.jobs) > 0 {
			j := q.jobs[0]
			q.jobs[0] = nil
			q.jobs = q.jobs[1:]
			if len(q.jobs) == 0 {
				q.jobs = q.jobs[:0:0] // let the backing array go rather than creep
			}
			q.mu.Unlock()
			return j
		}
		q.sleeping = true
		q.mu.Unlock()
		_, _ = unix.Read(q.efd, buf[:]) // EINTR: look again
	}
}

// fastRef is a running batch or coalesce reference.
type fastRef struct {
	fd       int // the reader's descriptor
	coalesce bool
	budget   int
	queues   []fastQueue
	sfds     []int // each sender's dup of fd
	free     chan *fastJob
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopping atomic.Bool

	// reader state
	list  []fastMember
	index map[uint64]int32
}

// startFastRef binds listen (udp4) and starts the reader and the senders;
// coalesce packs each read batch's chats per recipient into datagrams of
// at most budget bytes.
func startFastRef(listen string, coalesce bool, budget int) (*fastRef, error) {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("--listen %q: want IPv4 address:port", listen)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	setBuf(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF)
	setBuf(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := &fastRef{fd: fd, coalesce: coalesce, budget: budget, free: make(chan *fastJob, fastJobs), index: map[uint64]int32{},
		queues: make([]fastQueue, fastShards), sfds: make([]int, fastShards)}
	for i := range f.sfds {
		f.sfds[i], f.queues[i].efd = -1, -1
	}
	for i := range f.sfds {
		if f.sfds[i], err = unix.Dup(fd); err == nil {
			f.queues[i].efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC)
		}
		if err != nil {
			f.closeFDs()
			return nil, err
		}
	}
	for range fastJobs {
		f.free <- &fastJob{}
	}
	f.wg.Add(1 + fastShards)
	for s := range fastShards {
		go f.send(s)
	}
	go f.read()
	return f, nil
}

// setBuf asks for fastBuf bytes, forced where permitted.
func setBuf(fd, force, plain int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, fastBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, fastBuf)
	}
}

func (f *fastRef) closeFDs() {
	for i := range f.sfds {
		for _, fd := range []int{f.sfds[i], f.queues[i].efd} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}
	unix.Close(f.fd)
}

// addr is the bound address.
func (f *fastRef) addr() netip.AddrPort {
	sa, err := unix.Getsockname(f.fd)
	if in, ok := sa.(*unix.SockaddrInet4); err == nil && ok {
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), uint16(in.Port))
	}
	return netip.AddrPort{}
}

// stop wakes the reader (shutdown makes a blocked recvmmsg return), waits
// for all three threads and closes the descriptors.
func (f *fastRef) stop() {
	f.stopOnce.Do(func() {
		f.stopping.Store(true)
		_ = unix.Shutdown(f.fd, unix.SHUT_RDWR)
		f.wg.Wait()
		f.closeFDs()
	})
}

// read is the reader thread: recvmmsg (blocking until one datagram, then
// whatever else is queued, up to fastBatch), membership, encoding, and the
// hand-off of the batch to every sender.
func (f *fastRef) read() {
	defer f.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	bufs := make([]byte, fastBatch*fastDgram)
	names := make([]unix.RawSockaddrInet4, fastBatch)
	iovs := make([]unix.Iovec, fastBatch)
	hdrs := make([]unix.Mmsghdr, fastBatch)
	for i := range hdrs {
		iovs[i].Base = &bufs[i*fastDgram]
		iovs[i].SetLen(fastDgram)
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.SetIovlen(1)
		hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
		hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
	}
	defer func() {
		for s := range f.queues {
			f.queues[s].push(&fastJob{stop: true})
		}
	}()
	for {
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(f.fd), uintptr(unsafe.Pointer(&hdrs[0])), fastBatch, unix.MSG_WAITFORONE, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 || r == 0 || f.stopping.Load() {
			return // shut down: recvmmsg then returns empty messages at once, forever
		}
		n := int(r)
		j := <-f.free
		j.reset()
		var chats []fastChat
		for i := 0; i < n; i++ {
			p := bufs[i*fastDgram : i*fastDgram+int(hdrs[i].Len)]
			sa := &names[i]
			hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
			if sa.Family != unix.AF_INET {
				continue
			}
			key := uint64(binary.BigEndian.Uint32(sa.Addr[:]))<<16 | uint64(sa.Port)
			switch {
			case bytes.HasPrefix(p, verbL):
				if _, ok := f.index[key]; !ok {
					f.index[key] = int32(len(f.list))
					f.list = append(f.list, fastMember{sa: *sa})
				}
				f.reply(sa, "OK")
			case bytes.HasPrefix(p, verbC):
				idx, ok := f.index[key]
				if !ok {
					continue
				}
				off := len(j.arena)
				var good bool
				if j.arena, good = appendChatLine(j.arena, p); good {
					chats = append(chats, fastChat{from: idx, line: span{int32(off), int32(len(j.arena) - off)}})
				}
			case bytes.HasPrefix(p, verbQ):
				if idx, ok := f.index[key]; ok {
					f.remove(idx, key)
				}
				f.reply(sa, "EXIT")
			}
		}
		if len(chats) == 0 {
			f.free <- j
			continue
		}
		if f.coalesce {
			j.pack(chats, f.budget)
		} else {
			for _, c := range chats {
				j.spans = append(j.spans, c.line)
				j.from = append(j.from, c.from)
			}
		}
		j.finish()
		j.members = f.list[:len(f.list):len(f.list)]
		j.refs.Store(int32(fastShards))
		for s := range f.queues {
			f.queues[s].push(j)
		}
	}
}

// remove drops member idx: the last member takes its place, in a new copy
// of the list, since senders may still read the old one (a login only
// appends, which no sender's snapshot sees).
func (f *fastRef) remove(idx int32, key uint64) {
	last := len(f.list) - 1
	l := make([]fastMember, last, max(last, 8))
	copy(l, f.list[:last])
	if int(idx) < last {
		l[idx] = f.list[last]
		moved := f.list[last].sa
		f.index[uint64(binary.BigEndian.Uint32(moved.Addr[:]))<<16|uint64(moved.Port)] = idx
	}
	f.list = l
	delete(f.index, key)
}

// reply sends a short answer from the reader's descriptor.
func (f *fastRef) reply(sa *unix.RawSockaddrInet4, s string) {
	b := []byte(s)
	_, _, _ = unix.Syscall6(unix.SYS_SENDTO, uintptr(f.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0,
		uintptr(unsafe.Pointer(sa)), unix.SizeofSockaddrInet4)
}

// fastChat is a chat of the current read batch: its sender's index and its
// line in the arena.
type fastChat struct {
	from int32
	line span
}

// pack builds the coalesce reference's packings into the arena: the common
// one (every line) as packing 0, then one per distinct sender without its
// own lines; special maps those senders to their packing, by index.
func (j *fastJob) pack(chats []fastChat, budget int) {
	j.packs = append(j.packs, 0)
	j.arena, j.spans = appendPacked(j.arena, j.spans, chats, -1, budget)
	for i, c := range chats {
		seen := false
		for _, d := range chats[:i] {
			if d.from == c.from {
				seen = true
				break
			}
		}
		if seen {
			continue
		}
		j.packs = append(j.packs, int32(len(j.spans)))
		j.special = append(j.special, memberPack{c.from, int32(len(j.packs) - 1)})
		j.arena, j.spans = appendPacked(j.arena, j.spans, chats, c.from, budget)
	}
	j.packs = append(j.packs, int32(len(j.spans)))
	sortSpecial(j.special)
}

func sortSpecial(s []memberPack) {
	for i := 1; i < len(s); i++ { // few senders per batch: insertion sort
		for k := i; k > 0 && s[k].idx < s[k-1].idx; k-- {
			s[k], s[k-1] = s[k-1], s[k]
		}
	}
}

// appendPacked appends to arena the lines of chats not sent by skip, in
// order, packed into datagrams of at most budget bytes (lines joined by
// '\n'; a line longer than budget goes alone), and a span per datagram.
func appendPacked(arena []byte, spans []span, chats []fastChat, skip int32, budget int) ([]byte, []span) {
	start := len(arena)
	for _, c := range chats {
		if c.from == skip {
			continue
		}
		if n := len(arena) - start; n > 0 && n+1+int(c.line.n) > budget {
			spans = append(spans, span{int32(start), int32(n)})
			start = len(arena)
		}
		if len(arena) > start {
			arena = append(arena, '\n')
		}
		arena = append(arena, arena[c.line.off:c.line.off+c.line.n]...)
	}
	if n := len(arena) - start; n > 0 {
		spans = append(spans, span{int32(start), int32(n)})
	}
	return arena, spans
}

// send is sender thread s: the members i with i mod the senders = s, for every job,
// through its own descriptor, fastBatch messages per sendmmsg.
func (f *fastRef) send(s int) {
	defer f.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	q := &f.queues[s]
	w := fastSender{fd: f.sfds[s], hdrs: make([]unix.Mmsghdr, fastBatch)}
	for {
		j := q.pop()
		if j.stop {
			return
		}
		if f.coalesce {
			w.packed(j, s)
		} else {
			w.lines(j, s)
		}
		w.flush()
		if j.refs.Add(-1) == 0 {
			f.free <- j
		}
	}
}

// fastSender fills its prebuilt message array and sends it when full.
type fastSender struct {
	fd   int
	hdrs []unix.Mmsghdr
	k    int
}

func (w *fastSender) add(m *fastMember, v *unix.Iovec) {
	h := &w.hdrs[w.k].Hdr
	h.Name = (*byte)(unsafe.Pointer(&m.sa))
	h.Namelen = unix.SizeofSockaddrInet4
	h.Iov = v
	h.SetIovlen(1)
	if w.k++; w.k == len(w.hdrs) {
		w.flush()
	}
}

// lines: every chat to every member of sender s but its sender, member
// by member: a member's lines of the batch leave back to back, so the
// kernel enqueues them on one socket in a row and its reader wakes once
// for them (measured: about 4% more deliveries/s in room10 than chat by
// chat, docs/BENCHMARKS.md).
func (w *fastSender) lines(j *fastJob, s int) {
	for i := s; i < len(j.members); i += fastShards {
		for c := range j.spans {
			if int32(i) != j.from[c] {
				w.add(&j.members[i], &j.iovs[c])
			}
		}
	}
}

// packed: each member of sender s gets its packing's datagrams.
func (w *fastSender) packed(j *fastJob, s int) {
	sp := 0
	for i := s; i < len(j.members); i += fastShards {
		for sp < len(j.special) && int(j.special[sp].idx) < i {
			sp++
		}
		p := 0
		if sp < len(j.special) && int(j.special[sp].idx) == i {
			p = int(j.special[sp].pack)
		}
		for d := j.packs[p]; d < j.packs[p+1]; d++ {
			w.add(&j.members[i], &j.iovs[d])
		}
	}
}

// flush sends the filled messages. A message the kernel refuses is
// skipped; a full buffer is retried (the socket is blocking, so EAGAIN
// only comes with a send timeout, which is never set).
func (w *fastSender) flush() {
	for off := 0; off < w.k; {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(w.fd), uintptr(unsafe.Pointer(&w.hdrs[off])), uintptr(w.k-off), 0, 0, 0)
		switch {
		case errno == unix.EINTR || errno == unix.EAGAIN:
		case errno != 0 || r == 0:
			off++
		default:
			off += int(r)
		}
	}
	w.k = 0
}

// appendChatLine appends "name says: text" for "C name text"; false (and
// dst unchanged) if p has no text.
func appendChatLine(dst, p []byte) ([]byte, bool) {
	rest := p[2:]
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return dst, false
	}
	dst = append(dst, rest[:sp]...)
	dst = append(dst, " says: "...)
	return append(dst, rest[sp+1:]...), true
}
