//go:build linux

package main

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendUDP sends n chats from m, sender si, on the schedule
// begin + q*interval (v2: into room). When several are due (a late
// wake-up, or a high rate) they go in one sendmmsg, each still one chat per
// datagram, stamped with the time of sending.
func sendUDP(m *member, proto Proto, room string, si int, n int64, begin time.Time, interval time.Duration, sent, errs *atomic.Int64) {
	var bufs [batch][]byte
	var iovs [batch]unix.Iovec
	var hdrs [batch]unix.Mmsghdr
	for i := range bufs {
		bufs[i] = make([]byte, 0, 256)
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.SetIovlen(1)
	}
	text := bytes.Repeat([]byte("x"), textLen)
	classicPrefix := []byte("C " + m.name + " ")
	for q := int64(0); q < n; {
		k := due(time.Now(), begin, interval, q, n)
		if k == 0 {
			time.Sleep(time.Until(begin.Add(interval * time.Duration(q))))
			continue
		}
		ts := time.Now().UnixNano()
		for j := 0; j < k; j++ {
			encodeText(text, si, q+int64(j), ts)
			b := bufs[j][:0]
			if proto == ProtoV2 {
				b = appendV2Chat(b, room, m.nextID, text)
				m.nextID++
			} else {
				b = append(append(b, classicPrefix...), text...)
			}
			bufs[j] = b
			iovs[j].Base = &b[0]
			iovs[j].SetLen(len(b))
		}
		sendBatch(m.fd, hdrs[:k], sent, errs)
		q += int64(k)
	}
}

// due returns how many of the chats q..n-1 are due at now (at most batch).
func due(now, begin time.Time, interval time.Duration, q, n int64) int {
	if now.Before(begin) {
		return 0
	}
	d := min(int64(now.Sub(begin)/interval)+1, n)
	return int(min(max(d-q, 0), batch))
}

// sendBatch sends hdrs with sendmmsg on a connected socket. A message the
// kernel refuses (a pending ICMP error, say) is counted and skipped; a full
// socket buffer is waited out for up to 100 ms.
func sendBatch(fd int, hdrs []unix.Mmsghdr, sent, errs *atomic.Int64) {
	waits := 0
	for off := 0; off < len(hdrs); {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[off])), uintptr(len(hdrs)-off), 0, 0, 0)
		switch {
		case errno == unix.EINTR:
		case errno == unix.EAGAIN && waits < 100:
			waits++
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			_, _ = unix.Poll(pfd, 1)
		case errno != 0:
			errs.Add(1)
			off++
		default:
			sent.Add(int64(r))
			off += int(r)
		}
	}
}

// sendTCP publishes n chats from m to the NATS subject on the same
// schedule; the chats due at one wake-up go in one write.
func sendTCP(m *member, si int, n int64, begin time.Time, interval time.Duration, sent, errs *atomic.Int64) {
	pub := fmt.Appendf(nil, "PUB %s %d\r\n", natsSubject, textLen)
	buf := make([]byte, 0, batch*(len(pub)+textLen+2))
	text := bytes.Repeat([]byte("x"), textLen)
	for q := int64(0); q < n; {
		k := due(time.Now(), begin, interval, q, n)
		if k == 0 {
			time.Sleep(time.Until(begin.Add(interval * time.Duration(q))))
			continue
		}
		ts := time.Now().UnixNano()
		buf = buf[:0]
		for j := 0; j < k; j++ {
			encodeText(text, si, q+int64(j), ts)
			buf = append(append(append(buf, pub...), text...), '\r', '\n')
		}
		m.wmu.Lock()
		err := writeAll(m.fd, buf, time.Now().Add(5*time.Second))
		m.wmu.Unlock()
		if err != nil {
			errs.Add(int64(k))
		} else {
			sent.Add(int64(k))
		}
		q += int64(k)
	}
}
