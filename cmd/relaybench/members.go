//go:build linux

package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
	"golang.org/x/sys/unix"
)

// Proto is what a session's members speak.
type Proto int

const (
	ProtoClassic Proto = iota // classic text over UDP (chatrelay, naive, batch, coalesce)
	ProtoV2                   // chatrelay's v2 over UDP
	ProtoNATS                 // NATS core text protocol over TCP (the nats reference)
)

func (p Proto) String() string {
	switch p {
	case ProtoV2:
		return "v2"
	case ProtoNATS:
		return "nats"
	}
	return "classic"
}

// member is one client: a raw non-blocking socket (UDP, or TCP for NATS)
// outside the Go poller, so that receivers are woken by their own epoll once
// per batch and not per datagram. The socket is connected to the relay.
type member struct {
	fd   int
	name string
	idx  int // index in the session: senders are 0..S-1

	nextID uint64 // v2: the session's next chat id (ids never repeat, across steps too)
	rev    uint64 // v2: the revision the relay's welcome answered

	wmu sync.Mutex // NATS: serializes writes (a sender's PUBs, a receiver's PONG)

	partial []byte // NATS: an operation cut by the end of a read; owned by the receiver
}

func (m *member) close() { unix.Close(m.fd) }

// openUDPMember opens a UDP socket on 127.0.0.1, connected to relay.
func openUDPMember(name string, idx, rcvbuf int, relayAddr netip.AddrPort) (*member, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if rcvbuf > 0 {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Connect(fd, sockaddr(relayAddr)); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &member{fd: fd, name: name, idx: idx, nextID: 1}, nil
}

func sockaddr(ap netip.AddrPort) *unix.SockaddrInet4 {
	return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
}

// waitReadable polls fd for input until deadline; false on timeout.
func waitReadable(fd int, deadline time.Time) (bool, error) {
	for {
		ms := int(time.Until(deadline)/time.Millisecond) + 1
		if time.Now().After(deadline) {
			return false, nil
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, err
		}
		return n > 0, nil
	}
}

// loginClassic sends "L name" until "OK" arrives (3 tries, 1 s each). Join
// notices are skipped; any other answer is a refusal.
func (m *member) loginClassic() error {
	buf := make([]byte, 2048)
	for try := 0; try < 3; try++ {
		if _, err := unix.Write(m.fd, []byte("L "+m.name)); err != nil {
			return err
		}
		deadline := time.Now().Add(time.Second)
		for {
			ok, err := waitReadable(m.fd, deadline)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			for i := 0; i < 64; i++ {
				k, err := unix.Read(m.fd, buf)
				if err != nil {
					break
				}
				if string(buf[:k]) == "OK" {
					return nil
				}
				if !bytes.Contains(buf[:k], []byte(" joined the chat room")) {
					return fmt.Errorf("login %s: refused: %q", m.name, buf[:k])
				}
			}
		}
	}
	return fmt.Errorf("login %s: no OK after 3 tries", m.name)
}

// helloPad is what a v2 hello is padded to (docs/PROTOCOL.md: a retry is
// never larger than its request).
const helloPad = 256

// loginV2 runs the v2 handshake, offering revision rev: a padded hello,
// the relay's retry with a cookie, the hello again with it, and the
// welcome, whose revision it keeps in m.rev (6 hellos, 1 s each, at most).
// Join and backlog frames around it are skipped.
func (m *member) loginV2(rev uint64) error {
	buf := make([]byte, 65536)
	cookie := ""
	var frames []wire.Frame
	for try := 0; try < 6; try++ {
		if _, err := unix.Write(m.fd, helloV2(m.name, cookie, rev)); err != nil {
			return err
		}
		deadline := time.Now().Add(time.Second)
		resend := false
		for !resend {
			ok, err := waitReadable(m.fd, deadline)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			for i := 0; i < 64 && !resend; i++ {
				k, err := unix.Read(m.fd, buf)
				if err != nil {
					break
				}
				frames, err = wire.DecodeV2Wide(frames[:0], buf[:k]) // no relay sends more lines than the rev offered reads
				if err != nil {
					continue
				}
				for _, f := range frames {
					switch f.T {
					case wire.FrameRetry:
						cookie, resend = f.Cookie, true
					case wire.FrameWelcome:
						m.rev = f.Rev
						return nil
					case wire.FrameRefused:
						return fmt.Errorf("login %s: refused: %s %s", m.name, f.Code, f.Reason)
					}
				}
			}
		}
	}
	return fmt.Errorf("login %s: no v2 welcome after 6 hellos", m.name)
}

// defineV2Flags sets sc.V2Rev's default, the newest revision (wire.Rev),
// and the flag that changes it.
func defineV2Flags(fs *flag.FlagSet, sc *Scenario) {
	sc.V2Rev = wire.Rev
	fs.Func("v2-rev", fmt.Sprintf("the v2 `revision` chatrelay's v2 members offer in their hello, 0 to %d (default %d: the newest; the relay answers the lower of it and its own): 4 reads datagrams of up to 256 lines, 3 writes chats as rows, 2 packs events compact, 1 or 0 the full form, to compare", wire.Rev, wire.Rev), func(v string) error {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > wire.Rev {
			return fmt.Errorf("want 0 to %d", wire.Rev)
		}
		sc.V2Rev = n
		return nil
	})
}

// helloV2 is the v2 hello datagram of name, padded to about helloPad
// bytes, with the relay's cookie once it gave one ("" before), speaking
// revision rev (0: the field is left out, as a revision-0 client does).
func helloV2(name, cookie string, rev uint64) []byte {
	f := wire.Frame{T: wire.FrameHello, Room: wire.RoomMain, Name: name, Cookie: cookie, Rev: rev}
	if n := len(wire.EncodeV2(&f)); n < helloPad {
		f.Pad = strings.Repeat("x", helloPad-n)
	}
	return wire.EncodeV2(&f)
}

// natsSubject is the one subject every NATS member subscribes and publishes to.
const natsSubject = "room"

// openNATSMember connects to the NATS server at addr and subscribes: INFO,
// then CONNECT (echo off: a publisher does not get its own messages, as
// classic members do not), SUB and a PING whose PONG proves the subscription
// is in place. The socket is non-blocking when it returns.
func openNATSMember(name string, idx int, addr netip.AddrPort) (*member, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	m := &member{fd: fd, name: name, idx: idx}
	if err := unix.Connect(fd, sockaddr(addr)); err != nil {
		m.close()
		return nil, fmt.Errorf("nats %s: connect: %w", name, err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	deadline := time.Now().Add(5 * time.Second)
	var got []byte
	readUntil := func(want string) error {
		buf := make([]byte, 4096)
		for !bytes.Contains(got, []byte(want)) {
			if bytes.Contains(got, []byte("-ERR")) {
				return fmt.Errorf("nats %s: %q", name, got)
			}
			ok, err := waitReadable(fd, deadline)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("nats %s: no %q within 5s", name, strings.TrimSpace(want))
			}
			n, err := unix.Read(fd, buf)
			if err != nil || n == 0 {
				return fmt.Errorf("nats %s: read: %v (n=%d)", name, err, n)
			}
			got = append(got, buf[:n]...)
			if len(got) > 1<<16 {
				return fmt.Errorf("nats %s: no %q in 64 KiB", name, strings.TrimSpace(want))
			}
		}
		got = got[:0]
		return nil
	}
	if err := readUntil("\r\n"); err != nil { // INFO {...}
		m.close()
		return nil, err
	}
	hello := `CONNECT {"verbose":false,"pedantic":false,"echo":false,"name":"` + name + `"}` + "\r\n" +
		"SUB " + natsSubject + " 1\r\nPING\r\n"
	if err := writeAll(fd, []byte(hello), deadline); err != nil {
		m.close()
		return nil, err
	}
	if err := readUntil("PONG\r\n"); err != nil {
		m.close()
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		m.close()
		return nil, err
	}
	return m, nil
}

// writeAll writes b to fd (blocking or not) until done or deadline.
func writeAll(fd int, b []byte, deadline time.Time) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if n > 0 {
			b = b[n:]
			continue
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if !errors.Is(err, unix.EAGAIN) {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("write: timed out")
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		_, _ = unix.Poll(pfd, 10)
	}
	return nil
}

// drainAll reads and discards whatever is queued on the members' sockets
// (join notices while a big room logs in): without it, N(N-1)/2 notices
// would sit in kernel buffers. It never blocks, and returns how many
// datagrams it read.
func drainAll(ms []*member, buf []byte) int {
	n := 0
	for _, m := range ms {
		for i := 0; i < 4096; i++ {
			if _, err := unix.Read(m.fd, buf); err != nil {
				break
			}
			n++
		}
	}
	return n
}

// settle drains the members' sockets until nothing came for 100 ms (at
// most 3 s), so that the last joins' notices do not count in a step.
func settle(ms []*member, buf []byte) {
	quietSince := time.Now()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && time.Since(quietSince) < 100*time.Millisecond; {
		if drainAll(ms, buf) > 0 {
			quietSince = time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// relayRev is a relay's name in the step table and the progress lines:
// with the v2 revision its members speak (rev: 0 for classic and the
// references, named as they are).
func relayRev(relay string, rev uint64) string {
	if rev == 0 {
		return relay
	}
	return fmt.Sprintf("%s r%d", relay, rev)
}
