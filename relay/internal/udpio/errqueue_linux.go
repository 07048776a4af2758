//go:build linux

package udpio

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// EnableRecvErr asks the kernel to queue the errors of sent datagrams on
// the socket's error queue (IP_RECVERR, and IPV6_RECVERR on a dual-stack
// socket), each with the destination it was sent to. An unconnected UDP
// socket otherwise never learns that an ICMP port-unreachable came back,
// so a classic client that cannot heartbeat would never be noticed gone.
//
// With it enabled, every queued error also sets the socket's pending error
// (sk_err), which the next socket call consumes, whichever it is:
//
//   - a Read returns it (ECONNREFUSED for a port unreachable) once, instead
//     of a datagram;
//   - a Send, to any destination, returns it once and sends NOTHING. On an
//     unconnected socket a send cannot fail with ECONNREFUSED,
//     EHOSTUNREACH or ENETUNREACH otherwise, so a sender that gets one of
//     these MUST retry the send once (the error is cleared by then), or
//     one member's vanished port makes another member miss a message.
//
// After a Read error the read loop MUST call DrainErrors (it is cheap
// after any read error), which empties the queue and clears the pending
// error; datagrams already queued are not lost and the next Read returns
// them. Undrained, the queue holds up to the receive buffer's worth of
// errors, which are never seen.
func (c *Conn) EnableRecvErr() error {
	var serr error
	err := c.control(func(fd uintptr) { serr = enableRecvErr(int(fd), c.family) })
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("udpio: enable IP_RECVERR: %w", err)
	}
	c.dupMu.Lock()
	defer c.dupMu.Unlock()
	c.recvErr = true
	for _, fd := range c.senders {
		if err := enableRecvErr(fd, c.family); err != nil {
			return fmt.Errorf("udpio: enable IP_RECVERR: %w", err)
		}
	}
	return nil
}

// enableRecvErr is EnableRecvErr on the socket fd of family.
func enableRecvErr(fd, family int) error {
	// IPv4 errors are queued by IP_RECVERR, also for the IPv4-mapped
	// peers of a dual-stack socket.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
		return err
	}
	if family == unix.AF_INET6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
	}
	return nil
}

// errQueueOOB fits one IP_RECVERR or IPV6_RECVERR control message: a
// sock_extended_err followed by the offender's sockaddr_in6.
const errQueueOOB = 128

// DrainErrors reads the error queues of the socket and of its senders' own
// sockets (if any) until they are empty and calls fn for each error with
// the destination of the datagram that failed (IPv4 unmapped) and its
// errno. An ICMP or ICMPv6 port unreachable gives
// ECONNREFUSED; host or network unreachable give EHOSTUNREACH or
// ENETUNREACH; local errors (e.g. EMSGSIZE) also appear. dst is the invalid
// AddrPort if the kernel gave no address. It returns how many errors it
// read. It never blocks, needs EnableRecvErr to find anything, and may be
// called from any goroutine, also while another one is in Read.
func (c *Conn) DrainErrors(fn func(dst netip.AddrPort, errno syscall.Errno)) int {
	// Control, not Read: Read would wait for the lock that a Read blocked
	// in another goroutine holds.
	count := drainQueue(c.control, fn)
	// Then each sender's own socket (senderSocket), held open meanwhile
	// by dupMu; fn runs without it (it may send, and a send may open one).
	c.dupMu.Lock()
	n := len(c.senders)
	c.dupMu.Unlock()
	for i := range n {
		count += drainQueue(func(f func(fd uintptr)) error {
			c.dupMu.Lock()
			defer c.dupMu.Unlock()
			if c.closed || i >= len(c.senders) {
				return net.ErrClosed
			}
			f(uintptr(c.senders[i]))
			return nil
		}, fn)
	}
	return count
}

// drainQueue reads the error queue of the socket that control hands over
// until it is empty, calling fn for each error, and returns how many it
// read.
func drainQueue(control func(func(fd uintptr)) error, fn func(dst netip.AddrPort, errno syscall.Errno)) int {
	var (
		payload [1]byte // the failed datagram's contents are not needed
		oob     [errQueueOOB]byte
		count   int
	)
	for {
		var (
			oobn int
			from unix.Sockaddr
			rerr error
		)
		// MSG_DONTWAIT never waits.
		err := control(func(fd uintptr) {
			for {
				_, oobn, _, from, rerr = unix.Recvmsg(int(fd), payload[:], oob[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
				if rerr != unix.EINTR {
					return
				}
			}
		})
		if err != nil || rerr != nil {
			// EAGAIN: the queue is empty. Anything else (a closed socket)
			// ends the drain too.
			return count
		}
		count++
		ee, ok := parseExtendedErr(oob[:oobn])
		if !ok {
			continue
		}
		fn(sockaddrToAddrPort(from), syscall.Errno(ee.Errno))
	}
}

// parseExtendedErr finds the sock_extended_err in an error-queue message's
// control messages.
func parseExtendedErr(oob []byte) (unix.SockExtendedErr, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return unix.SockExtendedErr{}, false
	}
	for _, m := range msgs {
		ip4 := m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVERR
		ip6 := m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_RECVERR
		if (ip4 || ip6) && len(m.Data) >= int(unsafe.Sizeof(unix.SockExtendedErr{})) {
			// The kernel aligns control data; copy out rather than alias.
			var ee unix.SockExtendedErr
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&ee)), unsafe.Sizeof(ee)), m.Data)
			return ee, true
		}
	}
	return unix.SockExtendedErr{}, false
}

func sockaddrToAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}
