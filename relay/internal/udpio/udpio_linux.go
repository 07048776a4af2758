//go:build linux

package udpio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Conn is a UDP socket prepared for the relay. Its methods are safe for
// concurrent use. Lock order: dupMu before fdMu (a duplicate is made
// under dupMu from fd); readMu is taken alone.
type Conn struct {
	uc      *net.UDPConn
	raw     syscall.RawConn // uc's, until the socket is taken over (own)
	family  int             // AF_INET or AF_INET6 (dual-stack)
	pktinfo bool            // bound to a wildcard address: track each datagram's destination
	bc      batchConn       // recvmmsg/sendmmsg; nil when batching is off

	rxDrops uint32 // the kernel's count of datagrams dropped at this socket; reader-owned

	// own: the socket was taken out of Go's poller (see NewOpts) and is
	// reached through fd only; fd is -1 once closed.
	own   bool
	fdMu  sync.RWMutex // held shared while fd is used, exclusively to close it
	fd    int
	laddr net.Addr

	readMu sync.Mutex // serialises Read in own mode
	reader *Reader    // Read's, in own mode; guarded by readMu

	deadline    atomic.Int64 // the read deadline in Unix nanoseconds for raw Readers; 0: none
	closedNow   atomic.Bool  // closed, for raw Readers to see without the lock
	readStopped atomic.Bool  // StopReading was called

	// blocking: the own socket blocks (blockingSocket), so that a raw
	// Reader without a deadline waits in recvmmsg; set before any Reader.
	blocking bool

	// steered: the socket is a reuseport group of one that steers every
	// datagram to it (Listen): each batch sends on a socket of its own in
	// the group (senderSocket), else on a duplicate of this one.
	steered bool

	dupMu   sync.Mutex   // protects dups, senders, slots, recvErr, raws and closed
	dups    []int        // descriptors for batches (Batch.plat.fd): duplicates or senders, closed with c
	senders []int        // those of dups that are sockets of their own (senderSocket)
	slots   map[int]int  // NewBatchOn's shared descriptors by slot, among dups (batchFD)
	recvErr bool         // EnableRecvErr was called: senders queue their errors too
	raws    []*rawReader // the raw Readers, whose descriptors c closes (or wakes them to)
	closed  bool
}

// batchConn is what Conn needs of x/net's ipv4.PacketConn and
// ipv6.PacketConn (whose Message types are the same): on Linux ReadBatch
// and WriteBatch are one recvmmsg or sendmmsg for many datagrams.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

type platDest struct {
	sa     unix.Sockaddr
	ua     *net.UDPAddr                   // the same address for x/net's WriteBatch, made once
	oob    []byte                         // IP_PKTINFO or IPV6_PKTINFO naming the source address; nil if none
	rsa    [unix.SizeofSockaddrInet6]byte // the address as the kernel takes it (a Batch's sendmmsg), made once
	rsaLen uint32
}

// New prepares uc with batching on. On a wildcard address it enables
// IP_PKTINFO (and IPV6_RECVPKTINFO on a dual-stack socket).
func New(uc *net.UDPConn) (*Conn, error) { return NewOpts(uc, Options{Batch: true}) }

// NewOpts is New with options.
func NewOpts(uc *net.UDPConn, o Options) (*Conn, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &Conn{uc: uc, raw: raw, pktinfo: isWildcard(uc)}
	_, c.steered = steered.LoadAndDelete(uc)
	var serr error
	err = raw.Control(func(fd uintptr) {
		c.family, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if serr != nil {
			return
		}
		// Every datagram then carries the count of datagrams the kernel
		// dropped because the receive buffer was full, so they are counted.
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); serr != nil || !c.pktinfo {
			return
		}
		// IPv4 datagrams report IP_PKTINFO, also on a dual-stack socket.
		if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1); serr != nil {
			return
		}
		if c.family == unix.AF_INET6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("udpio: prepare socket: %w", err)
	}
	c.fd, c.laddr = -1, uc.LocalAddr()
	if o.Batch {
		if fd, ok := dupFD(raw.Control); ok {
			// Go's poller registers every socket (edge-triggered, reads
			// and writes): each datagram received and each one sent (its
			// buffer freed on loopback) then wakes the poller, and the
			// scheduler's idle threads call epoll_wait for nothing, at
			// high rates more often than the relay sends. The Conn keeps a
			// duplicate of the descriptor and closes uc, which takes the
			// socket out of the poller; it reads and sends with its own
			// system calls (batchPlat, rawReader).
			c.fd, c.own = fd, true
			_ = uc.Close()
			c.blocking = blockingSocket(fd)
			return c, nil
		}
		if c.family == unix.AF_INET {
			c.bc = ipv4.NewPacketConn(uc)
		} else {
			c.bc = ipv6.NewPacketConn(uc)
		}
	}
	return c, nil
}

// dupFD duplicates (close-on-exec) the descriptor that control hands over.
func dupFD(control func(func(fd uintptr)) error) (int, bool) {
	fd := -1
	var derr error
	if err := control(func(sfd uintptr) { fd, derr = unix.FcntlInt(sfd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		return -1, false
	}
	return fd, true
}

// control runs f on the socket's descriptor, held open meanwhile.
func (c *Conn) control(f func(fd uintptr)) error {
	if !c.own {
		return c.raw.Control(f)
	}
	c.fdMu.RLock()
	defer c.fdMu.RUnlock()
	if c.fd < 0 {
		return net.ErrClosed
	}
	f(uintptr(c.fd))
	return nil
}

// write runs send job j on the socket: as RawConn.Write's callback, or,
// for a socket taken over (own), as control's. Both callbacks are j's
// method values, bound once, so a send allocates nothing.
func (c *Conn) write(j *sendJob) error {
	if !c.own {
		return c.raw.Write(j.fn)
	}
	return c.control(j.do)
}

// Batching reports whether c reads and writes many datagrams per call.
func (c *Conn) Batching() bool { return c.bc != nil || c.own }

// Read reads one datagram into b. from is the sender (IPv4 unmapped); local
// is the address the datagram was sent to when the socket is on a wildcard
// address, and the invalid Addr otherwise. oob is scratch space of OOBSize
// bytes.
func (c *Conn) Read(b, oob []byte) (n int, from netip.AddrPort, local netip.Addr, err error) {
	if c.own {
		c.readMu.Lock()
		defer c.readMu.Unlock()
		if c.reader == nil {
			c.reader = c.newReader(1)
		}
		var p [1]Packet
		p[0].Buf = b
		if _, err := c.reader.Read(p[:]); err != nil {
			return 0, netip.AddrPort{}, netip.Addr{}, err
		}
		return p[0].N, p[0].From, p[0].Local, nil
	}
	n, oobn, _, from, err := c.uc.ReadMsgUDPAddrPort(b, oob)
	if err != nil {
		return n, from, local, err
	}
	if oobn > 0 {
		local = c.parseControl(oob[:oobn])
	}
	return n, normalize(from), local, nil
}

// RxDrops returns how many datagrams the kernel has dropped at this socket
// because its receive buffer was full, as of the last Read. Only the
// goroutine calling Read may call it.
func (c *Conn) RxDrops() uint32 { return c.rxDrops }

// parseControl reads the packet info (the local address, returned) and the
// drop counter from a datagram's control messages.
func (c *Conn) parseControl(oob []byte) (local netip.Addr) {
	// Walk the control messages in place (unix.ParseSocketControlMessage
	// would allocate a slice per datagram).
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if int(h.Len) < unix.SizeofCmsghdr || int(h.Len) > len(oob) {
			break
		}
		data := oob[unix.CmsgLen(0):h.Len]
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && len(data) >= 4:
			c.rxDrops = binary.NativeEndian.Uint32(data[:4])
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			local = netip.AddrFrom4([4]byte(data[4:8])) // ipi_spec_dst: the local address
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			local = netip.AddrFrom16([16]byte(data[:16])).Unmap()
		}
		next := unix.CmsgSpace(int(h.Len) - unix.CmsgLen(0))
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	if !c.pktinfo {
		return netip.Addr{}
	}
	return local
}

// Dest prepares a destination. local is the address the peer sent to (from
// Read); it becomes the source address of everything sent to the peer.
func (c *Conn) Dest(to netip.AddrPort, local netip.Addr) Dest {
	to = normalize(to)
	d := Dest{Addr: to, Local: local}
	d.plat.ua = net.UDPAddrFromAddrPort(to)
	port := to.Port()
	if c.family == unix.AF_INET {
		d.plat.sa = &unix.SockaddrInet4{Port: int(port), Addr: to.Addr().As4()}
		rsa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&d.plat.rsa[0]))
		rsa.Family = unix.AF_INET
		rsa.Addr = to.Addr().As4()
		d.plat.rsaLen = unix.SizeofSockaddrInet4
	} else {
		d.plat.sa = &unix.SockaddrInet6{Port: int(port), Addr: to.Addr().As16()}
		rsa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&d.plat.rsa[0]))
		rsa.Family = unix.AF_INET6
		rsa.Addr = to.Addr().As16()
		d.plat.rsaLen = unix.SizeofSockaddrInet6
	}
	// The port, in network byte order, right after the family in both.
	binary.BigEndian.PutUint16(d.plat.rsa[2:4], port)
	if c.pktinfo && local.IsValid() && !local.IsUnspecified() {
		if local.Is4() {
			d.plat.oob = unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: local.As4()})
		} else {
			d.plat.oob = unix.PktInfo6(&unix.Inet6Pktinfo{Addr: local.As16()})
		}
	}
	return d
}

// Send sends b to d. It never blocks: a full socket buffer returns EAGAIN,
// which the caller counts like any other send error.
func (c *Conn) Send(b []byte, d *Dest) error {
	j := sendJobs.Get().(*sendJob)
	j.b, j.one[0] = b, d
	j.dests = j.one[:]
	err := c.write(j)
	if err == nil {
		err = j.lastErr
	}
	j.reset()
	sendJobs.Put(j)
	return err
}

// SendAll sends b to every destination in dests, never blocking, and
// returns how many sends failed (see Send). It costs no allocation: the
// callback handed to the socket is a pooled job's method value, bound once.
// The socket's write lock is taken once per sendChunk destinations, so a
// large room does not hold it against other workers for long.
func (c *Conn) SendAll(b []byte, dests []*Dest) (failed int) {
	if len(dests) == 0 {
		return 0
	}
	if c.bc != nil {
		return c.sendBatch(b, dests)
	}
	j := sendJobs.Get().(*sendJob)
	j.b = b
	for len(dests) > 0 {
		n := min(len(dests), sendChunk)
		j.dests = dests[:n]
		if err := c.write(j); err != nil {
			j.failed += n // the socket is closed
		}
		dests = dests[n:]
	}
	failed = j.failed
	j.reset()
	sendJobs.Put(j)
	return failed
}

// sendChunk is how many sends one hold of the socket's write lock covers,
// and how many datagrams one sendmmsg or recvmmsg carries at most.
const sendChunk = 64

// batchJob is the scratch of one batched SendAll, pooled: a SendAll makes
// no allocation.
type batchJob struct {
	ms  [sendChunk]ipv4.Message
	buf [1][]byte // every message's Buffers: the same bytes for all
}

var batchJobs = sync.Pool{New: func() any { return new(batchJob) }}

// sendBatch is SendAll with sendmmsg: up to sendChunk destinations per
// system call, never waiting (MSG_DONTWAIT).
func (c *Conn) sendBatch(b []byte, dests []*Dest) (failed int) {
	j := batchJobs.Get().(*batchJob)
	j.buf[0] = b
	for len(dests) > 0 {
		n := min(len(dests), sendChunk)
		ms := j.ms[:n]
		for i, d := range dests[:n] {
			ms[i].Buffers, ms[i].OOB, ms[i].Addr = j.buf[:], d.plat.oob, d.plat.ua
		}
		failed += c.writeBatch(ms)
		dests = dests[n:]
	}
	j.buf[0] = nil
	clear(j.ms[:])
	batchJobs.Put(j)
	return failed
}

// writeBatch sends ms, as many per sendmmsg as the kernel takes, and
// returns how many could not be sent. sendmmsg stops at the first message
// that fails and reports the ones before it; the failing one is then the
// first of the next call, which returns its error. As with one sendmsg (see
// sendJob.run), a pending ICMP error about some other peer fails a call
// without sending anything: such a call is tried again, boundedly.
func (c *Conn) writeBatch(ms []ipv4.Message) (failed int) {
	return c.writeBatchFn(ms, nil)
}

// writeBatchFn is writeBatch telling fail, if not nil, the index in ms of
// each message that could not be sent.
func (c *Conn) writeBatchFn(ms []ipv4.Message, fail func(i int)) (failed int) {
	tries, at := 0, 0
	for at < len(ms) {
		n, err := c.bc.WriteBatch(ms[at:], unix.MSG_DONTWAIT)
		if n > 0 {
			at, tries = at+n, 0
			continue
		}
		switch {
		case err == nil || errors.Is(err, net.ErrClosed):
			// nothing sent and no reason to retry
			if fail != nil {
				for i := at; i < len(ms); i++ {
					fail(i)
				}
			}
			return failed + len(ms) - at
		case isPendingICMP(err) && tries < sendTries:
			tries++
			continue
		}
		failed++ // this destination's own failure (e.g. EAGAIN): skip it
		if fail != nil {
			fail(at)
		}
		at, tries = at+1, 0
	}
	return failed
}

// batchPlat is a Batch's own descriptor and its prebuilt message array for
// sendmmsg.
//
// The descriptor is a duplicate of the socket's (dup: the same socket, so
// replies still leave from the address members send to). Go serialises the
// writers of one *net.UDPConn on its descriptor's write lock, which x/net's
// WriteBatch takes too; each fan-out shard has its own Batch, and with its
// own descriptor its sendmmsg runs while another shard's does.
type batchPlat struct {
	fd   int // -1 until the first send; then the batch's descriptor (its own or its slot's), or -2 if dup failed
	slot int // NewBatchOn's slot, or -1: a descriptor of its own
	hdrs [batchSize]unix.Mmsghdr
	iovs [batchSize]unix.Iovec
	ms   []ipv4.Message // the x/net path, if dup failed
	fail func(i int)    // b.fail, bound once so that a send does not allocate
}

func (p *batchPlat) init(slot int) { p.fd, p.slot = -1, slot }

// batchFD returns the descriptor a batch of slot sends on: for slot >= 0
// the slot's, made by dup the first time a batch of the slot sends; for a
// negative slot one of the batch's own.
func (c *Conn) batchFD(slot int) (int, bool) {
	c.dupMu.Lock()
	defer c.dupMu.Unlock()
	if fd, ok := c.slots[slot]; ok {
		return fd, true
	}
	fd, ok := c.dup()
	if ok && slot >= 0 {
		if c.slots == nil {
			c.slots = make(map[int]int)
		}
		c.slots[slot] = fd
	}
	return fd, ok
}

// dup returns a duplicate of c's descriptor (a socket of its own in a
// steered group) that c closes when it closes. c.dupMu is held.
func (c *Conn) dup() (int, bool) {
	if c.closed {
		return -1, false
	}
	if c.steered {
		if nfd, ok := c.senderSocket(); ok {
			c.dups, c.senders = append(c.dups, nfd), append(c.senders, nfd)
			return nfd, true
		}
	}
	nfd, ok := dupFD(c.control)
	if !ok {
		return -1, false
	}
	c.dups = append(c.dups, nfd)
	return nfd, true
}

// senderSocket opens a socket for one batch's sends in c's steered
// reuseport group: bound to c's address, so that what it sends leaves from
// there, with c's send buffer and, after EnableRecvErr, its own error
// queue (DrainErrors reads it). It receives nothing (steerToFirst). c.dupMu
// is held.
func (c *Conn) senderSocket() (int, bool) {
	var (
		sa             unix.Sockaddr
		sndbuf, v6only int
		gerr           error
	)
	if err := c.control(func(fd uintptr) {
		if sa, gerr = unix.Getsockname(int(fd)); gerr != nil {
			return
		}
		if sndbuf, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF); gerr != nil {
			return
		}
		if c.family == unix.AF_INET6 {
			v6only, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		}
	}); err != nil || gerr != nil {
		return -1, false
	}
	fd, err := unix.Socket(c.family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, false
	}
	ok := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) == nil &&
		(c.family != unix.AF_INET6 || unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only) == nil) &&
		(!c.recvErr || enableRecvErr(fd, c.family) == nil) &&
		unix.Bind(fd, sa) == nil
	if !ok {
		unix.Close(fd)
		return -1, false
	}
	// The kernel reports twice the size asked for (its bookkeeping).
	setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, sndbuf/2)
	return fd, true
}

// send sends the batch: one sendmmsg for all (on the batch's own
// descriptor) when batching is on, else one sendmsg each.
func (b *Batch) send() {
	if !b.c.Batching() {
		b.sendEach()
		return
	}
	if b.plat.fail == nil {
		b.plat.fail = b.fail
	}
	if b.plat.fd == -1 {
		b.plat.fd = -2
		if fd, ok := b.c.batchFD(b.plat.slot); ok {
			b.plat.fd = fd
		}
	}
	if b.plat.fd < 0 {
		if b.c.own {
			b.sendEach() // no descriptor of its own: one sendmsg each
		} else {
			b.sendShared()
		}
		return
	}
	for i := range b.n {
		d, p := b.dests[i], b.bufs[i][0]
		iov := &b.plat.iovs[i]
		iov.Base = nil
		if len(p) > 0 {
			iov.Base = &p[0]
		}
		iov.SetLen(len(p))
		h := &b.plat.hdrs[i].Hdr
		h.Name, h.Namelen = &d.plat.rsa[0], d.plat.rsaLen
		h.Iov = iov
		h.SetIovlen(1)
		h.Control = nil
		h.SetControllen(0)
		if len(d.plat.oob) > 0 {
			h.Control = &d.plat.oob[0]
			h.SetControllen(len(d.plat.oob))
		}
	}
	b.sendmmsg(b.n)
	for i := range b.n {
		b.plat.iovs[i].Base = nil
		b.plat.hdrs[i].Hdr = unix.Msghdr{}
	}
}

// sendEach sends the batch with one Send per datagram.
func (b *Batch) sendEach() {
	for i := range b.n {
		if b.c.Send(b.bufs[i][0], b.dests[i]) != nil {
			b.fail(i)
		}
	}
}

// sendmmsg sends the first n prebuilt messages, as many per system call as
// the kernel takes, never waiting, and tells fail about each one it could
// not send. As writeBatchFn: the kernel stops at the first message that
// fails and reports those before it; a pending ICMP error about another
// peer is tried again, boundedly; any other error is that message's own.
func (b *Batch) sendmmsg(n int) {
	tries, at := 0, 0
	for at < n {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(b.plat.fd), uintptr(unsafe.Pointer(&b.plat.hdrs[at])), uintptr(n-at), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == 0 && r > 0:
			at, tries = at+int(r), 0
			continue
		case errno == unix.EINTR:
			continue
		case errno == 0 || errno == unix.EBADF: // nothing sent, no reason to retry (closed)
			for i := at; i < n; i++ {
				b.fail(i)
			}
			return
		case isPendingICMP(errno) && tries < sendTries:
			tries++
			continue
		}
		b.fail(at) // this destination's own failure (e.g. EAGAIN): skip it
		at, tries = at+1, 0
	}
}

// sendShared is send through x/net's WriteBatch on the socket itself.
func (b *Batch) sendShared() {
	if b.plat.ms == nil {
		b.plat.ms = make([]ipv4.Message, batchSize)
	}
	ms := b.plat.ms[:b.n]
	for i := range ms {
		d := b.dests[i]
		ms[i].Buffers, ms[i].OOB, ms[i].Addr = b.bufs[i][:], d.plat.oob, d.plat.ua
	}
	b.c.writeBatchFn(ms, b.plat.fail)
	for i := range ms {
		ms[i].Buffers, ms[i].OOB, ms[i].Addr = nil, nil, nil
	}
}

// isPendingICMP reports an error that an unconnected UDP socket returns
// only for a queued ICMP error about some earlier datagram.
func isPendingICMP(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	return errno == unix.ECONNREFUSED || errno == unix.EHOSTUNREACH || errno == unix.ENETUNREACH
}

// sendJob is the state of one Send or SendAll, reused through sendJobs so
// that the callback passed to RawConn.Write (fn, bound once) does not make
// a closure per send.
type sendJob struct {
	b       []byte
	dests   []*Dest
	one     [1]*Dest
	failed  int
	lastErr error
	fn      func(fd uintptr) bool // j.run, for RawConn.Write
	do      func(fd uintptr)      // j.send, for control
}

var sendJobs = sync.Pool{New: func() any {
	j := &sendJob{}
	j.fn, j.do = j.run, j.send
	return j
}}

func (j *sendJob) reset() {
	j.b, j.dests, j.one[0], j.failed, j.lastErr = nil, nil, nil, 0, nil
}

// run is send for RawConn.Write: it always returns true (never wait for
// writability).
func (j *sendJob) run(fd uintptr) bool {
	j.send(fd)
	return true
}

// send sends to every destination of the job on fd.
//
// With IP_RECVERR on, every ICMP error about any peer becomes the socket's
// pending error and is returned by whatever call comes next, a send to
// another member included, which then sends nothing. An unconnected UDP
// socket returns these errnos only that way, and each failed attempt clears
// one, so a send is tried again, a bounded number of times: with several
// peers gone, their errors can arrive one after another (on another CPU)
// while a fan-out is under way.
func (j *sendJob) send(fd uintptr) {
	for _, d := range j.dests {
		var err error
		for try := 0; try < sendTries; try++ {
			err = unix.Sendmsg(int(fd), j.b, d.plat.oob, d.plat.sa, unix.MSG_DONTWAIT)
			if err != unix.ECONNREFUSED && err != unix.EHOSTUNREACH && err != unix.ENETUNREACH {
				break // sent, or failed for this peer's own reason
			}
		}
		if err != nil {
			j.failed++
		}
		j.lastErr = err
	}
}

// sendTries bounds the attempts of one send through pending ICMP errors.
const sendTries = 32

// LocalAddr returns the socket's bound address.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// SetReadDeadline unblocks or bounds Read, as net.Conn's.
func (c *Conn) SetReadDeadline(t time.Time) error {
	var d int64
	if !t.IsZero() {
		d = max(t.UnixNano(), 1)
	}
	c.deadline.Store(d)
	if d != 0 {
		c.wakeReaders() // to sleep until the new deadline, or return at once
	}
	if c.own {
		return nil
	}
	return c.uc.SetReadDeadline(t)
}

// Close closes the socket; a blocked Read returns net.ErrClosed.
func (c *Conn) Close() error {
	c.dupMu.Lock()
	c.closed = true
	c.closedNow.Store(true)
	c.closeReadersLocked()
	for _, fd := range c.dups {
		unix.Close(fd)
	}
	c.dups, c.senders, c.slots = nil, nil, nil
	c.dupMu.Unlock()
	if c.own {
		c.fdMu.Lock()
		defer c.fdMu.Unlock()
		if c.fd < 0 {
			return net.ErrClosed
		}
		err := unix.Close(c.fd)
		c.fd = -1
		return err
	}
	return c.uc.Close()
}

// Reader reads datagrams from a Conn, many per system call when the Conn
// batches. It belongs to one goroutine, the only one that may call Read
// and the Conn's RxDrops.
type Reader struct {
	c      *Conn
	raw    *rawReader // recvmmsg on its own descriptor; nil: through x/net
	failed bool       // own mode, and the Reader could not have a descriptor
	ms     []ipv4.Message
	bufs   [][]byte // ms[i].Buffers is bufs[i : i+1]
	oob    []byte   // OOBSize bytes per message
}

// NewReader returns c's reader; c should have only one.
func (c *Conn) NewReader() *Reader {
	n := 1
	if c.Batching() {
		n = ReadBatch
	}
	return c.newReader(n)
}

// newReader is NewReader for up to n datagrams per Read.
func (c *Conn) newReader(n int) *Reader {
	r := &Reader{c: c, ms: make([]ipv4.Message, n), bufs: make([][]byte, n), oob: make([]byte, n*OOBSize)}
	for i := range r.ms {
		r.ms[i].Buffers = r.bufs[i : i+1]
	}
	if c.Batching() && !r.newRaw(n) && c.own {
		r.failed = true // no descriptor of its own: it reads nothing
	}
	return r
}

// Read blocks until at least one datagram arrived and fills pkts[:n] with
// up to min(len(pkts), ReadBatch) of them. Each pkts[i].Buf must be set by
// the caller; Read keeps no reference to it after returning.
func (r *Reader) Read(pkts []Packet) (n int, err error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	if r.raw != nil {
		return r.readRaw(pkts)
	}
	if r.failed {
		return 0, net.ErrClosed
	}
	if r.c.bc == nil {
		p := &pkts[0]
		p.N, p.From, p.Local, err = r.c.Read(p.Buf, r.oob)
		if err != nil {
			return 0, err
		}
		return 1, nil
	}
	ms := r.ms[:min(len(pkts), len(r.ms))]
	for i := range ms {
		r.bufs[i] = pkts[i].Buf
		ms[i].OOB = r.oob[i*OOBSize : (i+1)*OOBSize]
	}
	n, err = r.c.bc.ReadBatch(ms, 0)
	for i := range ms {
		r.bufs[i] = nil // keep no buffer alive
	}
	if err != nil {
		return 0, err
	}
	for i := 0; i < n; i++ {
		m, p := &ms[i], &pkts[i]
		p.N, p.Local = m.N, netip.Addr{}
		if ua, ok := m.Addr.(*net.UDPAddr); ok {
			p.From = normalize(ua.AddrPort())
		} else {
			p.From = netip.AddrPort{}
		}
		if m.NN > 0 {
			p.Local = r.c.parseControl(m.OOB[:m.NN])
		}
		m.Addr = nil
	}
	return n, nil
}

// SetBuffers asks for receive and send buffers of n bytes on uc, beyond
// the system's maximum (net.core.rmem_max, wmem_max) where the process may
// (SO_RCVBUFFORCE and SO_SNDBUFFORCE need CAP_NET_ADMIN), else up to that
// maximum. Errors are not reported: the kernel's buffers still work.
func SetBuffers(uc *net.UDPConn, n int) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		setBuffer(int(fd), unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, n)
		setBuffer(int(fd), unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, n)
	})
}

// setBuffer sets one of fd's buffers to n bytes with force (beyond the
// system's maximum; needs CAP_NET_ADMIN), else with plain (capped by it).
func setBuffer(fd, force, plain, n int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, n) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, n)
	}
}
