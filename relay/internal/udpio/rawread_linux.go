//go:build linux

package udpio

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawReader is a Reader's own path on Linux: recvmmsg called directly
// (unix.Syscall6) on the Reader's own duplicate of the socket, with a
// prebuilt array of mmsghdr, never through Go's poller. On a socket the
// Conn made blocking (blockingSocket) a Read without a deadline waits in
// recvmmsg itself (MSG_WAITFORONE), as a minimal recvmmsg loop does: one
// system call per batch, where a non-blocking read of an empty socket and
// a poll would make three. StopReading and Close wake it (shutdown); a new
// deadline is seen within readTick. With a deadline, or on a socket left
// non-blocking, the reader waits in ppoll on the socket and on its own
// eventfd, which SetReadDeadline (a deadline in the past) and Close write
// to wake it.
// The goroutine that reads is meant to be locked to its OS thread: it then
// sleeps and wakes in the kernel, as a minimal recvmmsg loop does, instead
// of parking in the Go scheduler and being woken through the netpoller
// for every batch.
type rawReader struct {
	fd    int // the Reader's duplicate of the socket
	wake  int // eventfd: written to wake a Read that waits
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	oob   []byte
	pfd   [2]unix.PollFd

	active bool // in a Read; guarded by the Conn's dupMu, as fd and wake are when it is false
}

// newRaw sets up r's raw path; it reports false if the descriptors could
// not be made (r then reads through x/net).
func (r *Reader) newRaw(n int) bool {
	c := r.c
	c.dupMu.Lock()
	defer c.dupMu.Unlock()
	if c.closed {
		return false
	}
	fd, ok := dupFD(c.control)
	if !ok {
		return false
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return false
	}
	rr := &rawReader{
		fd: fd, wake: wake,
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		oob:   make([]byte, n*OOBSize),
	}
	rr.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	rr.pfd[1] = unix.PollFd{Fd: int32(wake), Events: unix.POLLIN}
	for i := range rr.hdrs {
		h := &rr.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&rr.names[i]))
		h.Iov = &rr.iovs[i]
		h.SetIovlen(1)
		h.Control = &rr.oob[i*OOBSize]
	}
	r.raw = rr
	c.raws = append(c.raws, rr)
	return true
}

// closeLocked closes rr's descriptors, once; c.dupMu must be held.
func (rr *rawReader) closeLocked() {
	if rr.fd >= 0 {
		unix.Close(rr.fd)
		unix.Close(rr.wake)
		rr.fd, rr.wake = -1, -1
	}
}

// enter marks rr as in a Read; it reports false once c is closed.
func (c *Conn) enter(rr *rawReader) bool {
	c.dupMu.Lock()
	defer c.dupMu.Unlock()
	if c.closed {
		return false
	}
	rr.active = true
	return true
}

// leave marks rr as out of Read, and closes its descriptors if c was
// closed meanwhile (Close leaves those of a Read under way to it).
func (c *Conn) leave(rr *rawReader) {
	c.dupMu.Lock()
	defer c.dupMu.Unlock()
	rr.active = false
	if c.closed {
		rr.closeLocked()
	}
}

// readRaw is Read on the raw path.
func (r *Reader) readRaw(pkts []Packet) (int, error) {
	rr := r.raw
	if !r.c.enter(rr) {
		return 0, net.ErrClosed
	}
	defer r.c.leave(rr)
	n := min(len(pkts), len(rr.hdrs))
	for i := range n {
		b := pkts[i].Buf
		rr.iovs[i].Base = nil
		if len(b) > 0 {
			rr.iovs[i].Base = &b[0]
		}
		rr.iovs[i].SetLen(len(b))
		h := &rr.hdrs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.SetControllen(OOBSize)
		h.Flags = 0
	}
	defer func() {
		for i := range n {
			rr.iovs[i].Base = nil // keep no buffer alive
		}
	}()
	for {
		if err := r.stopped(); err != nil {
			return 0, err
		}
		// Without a deadline, on a blocking socket, recvmmsg itself waits
		// for the first datagram; else it never waits and ppoll does.
		block := r.c.blocking && r.c.deadline.Load() == 0
		flags := uintptr(unix.MSG_DONTWAIT)
		if block {
			flags = unix.MSG_WAITFORONE
		}
		got, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(rr.fd), uintptr(unsafe.Pointer(&rr.hdrs[0])), uintptr(n), flags, 0, 0)
		switch {
		case errno == 0:
			if got := r.fill(pkts, int(got)); got > 0 {
				return got, nil
			}
			continue // shut down for reading: stopped says why
		case errno == unix.EINTR, errno == unix.EAGAIN && block:
			continue // a signal, or readTick passed: look at the deadline
		case errno != unix.EAGAIN:
			return 0, errno
		}
		// Nothing queued: sleep in the kernel until a datagram, an error,
		// a wake-up or the deadline.
		if err := r.wait(); err != nil {
			return 0, err
		}
	}
}

// stopped returns the error a Read returns once the Conn is closed, its
// reading stopped, or its read deadline has passed, else nil.
func (r *Reader) stopped() error {
	if r.c.closedNow.Load() {
		return net.ErrClosed
	}
	if r.c.readStopped.Load() {
		return os.ErrDeadlineExceeded
	}
	if d := r.c.deadline.Load(); d != 0 && time.Now().UnixNano() >= d {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// wait blocks until the socket is readable or reports an error, or the
// reader is woken, or the read deadline passes.
func (r *Reader) wait() error {
	rr := r.raw
	for {
		var ts *unix.Timespec
		if d := r.c.deadline.Load(); d != 0 {
			left := time.Until(time.Unix(0, d))
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			t := unix.NsecToTimespec(left.Nanoseconds())
			ts = &t
		}
		rr.pfd[0].Revents, rr.pfd[1].Revents = 0, 0
		_, err := unix.Ppoll(rr.pfd[:], ts, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if rr.pfd[1].Revents != 0 {
			var buf [8]byte
			_, _ = unix.Read(rr.wake, buf[:]) // reset it: the next wait sleeps again
			return r.stopped()
		}
		if rr.pfd[0].Revents&unix.POLLIN != 0 {
			return nil
		}
		if rr.pfd[0].Revents&unix.POLLERR != 0 {
			return ErrQueuedErrors
		}
		if rr.pfd[0].Revents != 0 {
			return net.ErrClosed // POLLNVAL, POLLHUP: the socket is gone
		}
		// A timeout: the loop finds the deadline passed.
	}
}

// fill converts the first n messages the kernel filled into pkts and
// returns how many held datagrams: it stops at a message without a source
// address, as a socket shut down for reading hands out, at once and
// forever (they are not datagrams).
func (r *Reader) fill(pkts []Packet, n int) int {
	rr := r.raw
	for i := range n {
		p, h := &pkts[i], &rr.hdrs[i]
		if h.Hdr.Namelen == 0 {
			return i
		}
		p.N, p.Local = int(h.Len), netip.Addr{}
		p.From = rawAddrPort(&rr.names[i], h.Hdr.Namelen)
		if cl := int(h.Hdr.Controllen); cl > 0 {
			p.Local = r.c.parseControl(rr.oob[i*OOBSize : i*OOBSize+min(cl, OOBSize)])
		}
	}
	return n
}

// rawAddrPort reads a sockaddr the kernel wrote, IPv4 unmapped; the invalid
// AddrPort if it is none of IPv4 and IPv6.
func rawAddrPort(sa *unix.RawSockaddrInet6, n uint32) netip.AddrPort {
	b := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	port := binary.BigEndian.Uint16(b[2:4])
	switch {
	case sa.Family == unix.AF_INET && n >= unix.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case sa.Family == unix.AF_INET6 && n >= unix.SizeofSockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// closeReadersLocked closes the descriptors of every raw Reader not in a
// Read, and wakes those in one (they close their own as they leave).
// c.dupMu must be held.
func (c *Conn) closeReadersLocked() {
	for _, rr := range c.raws {
		if rr.active {
			rr.poke()
			if c.blocking {
				_ = unix.Shutdown(rr.fd, unix.SHUT_RD) // it may wait in recvmmsg
			}
		} else {
			rr.closeLocked()
		}
	}
	c.raws = nil
}

// wakeReaders wakes every raw Reader in a Read, to look at the deadline.
func (c *Conn) wakeReaders() {
	c.dupMu.Lock()
	defer c.dupMu.Unlock()
	for _, rr := range c.raws {
		if rr.active {
			rr.poke()
		}
	}
}

// poke wakes rr's Read from its wait (an eventfd write); c.dupMu must be
// held, so that the eventfd is open.
func (rr *rawReader) poke() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(rr.wake, one[:])
}

// readTick is the receive timeout (SO_RCVTIMEO) of a socket the Conn made
// blocking: a Read waiting in recvmmsg looks at the deadline at least this
// often. SetReadDeadline does not wake it sooner; StopReading and Close do.
// Idle, a reader wakes 4 times a second.
const readTick = 250 * time.Millisecond

// blockingSocket makes the socket behind fd block, with a receive timeout
// of readTick, for raw Readers to wait in recvmmsg itself. O_NONBLOCK is a
// flag of the open socket, shared by every duplicate of fd: each other
// call on it (sendmmsg, sendmsg, the error queue's recvmsg) says
// MSG_DONTWAIT. It reports false, the socket left non-blocking, if either
// step failed; fd must be out of Go's poller.
func blockingSocket(fd int) bool {
	tv := unix.NsecToTimeval(readTick.Nanoseconds())
	if unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv) != nil {
		return false
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return false
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	return err == nil
}

// StopReading ends reading for good: a Read under way returns
// os.ErrDeadlineExceeded at once, and so does every later one. The socket
// still sends. Unlike a deadline it cannot be undone: where a Reader waits
// in recvmmsg itself the socket is shut down for reading to wake it.
func (c *Conn) StopReading() {
	c.readStopped.Store(true)
	_ = c.SetReadDeadline(time.Unix(1, 0)) // wakes a Reader in ppoll, and one reading through uc
	c.dupMu.Lock()
	defer c.dupMu.Unlock()
	if !c.blocking || c.closed {
		return
	}
	c.fdMu.RLock()
	defer c.fdMu.RUnlock()
	if c.fd >= 0 {
		_ = unix.Shutdown(c.fd, unix.SHUT_RD)
	}
}
