package udpio

import "golang.org/x/sys/unix"

// PeekErrQueue reports whether c has a pending or queued error, without
// consuming it: poll reports POLLERR and leaves both in place (a
// MSG_ERRQUEUE read would dequeue even with MSG_PEEK). For tests.
func PeekErrQueue(c *Conn) bool {
	var pending bool
	_ = c.control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd)}}
		n, err := unix.Poll(fds, 0)
		pending = err == nil && n == 1 && fds[0].Revents&unix.POLLERR != 0
	})
	return pending
}

// SenderQueued reports how many of c's senders' own sockets (and how many
// there are) have a datagram waiting to be read. For tests.
func SenderQueued(c *Conn) (queued, senders int) {
	c.dupMu.Lock()
	defer c.dupMu.Unlock()
	for _, fd := range c.senders {
		n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		if err == nil && n > 0 {
			queued++
		}
	}
	return queued, len(c.senders)
}
