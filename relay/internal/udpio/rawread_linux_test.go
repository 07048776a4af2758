//go:build linux

package udpio_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
)

// socketInode returns the inode of uc's socket.
func socketInode(t *testing.T, uc *net.UDPConn) uint64 {
	t.Helper()
	raw, err := uc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return st.Ino
}

// polled reports whether an epoll instance of this process watches the
// socket with inode ino (/proc/self/fdinfo of each eventpoll descriptor
// lists what it watches, "ino:" in hex).
func polled(t *testing.T, ino uint64) bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	want := "ino:" + strconv.FormatUint(ino, 16)
	for _, e := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(info)) {
			if f == want {
				return true
			}
		}
	}
	return false
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(fds)
}

// With batching on, a Conn takes its socket out of Go's poller (whose
// registration makes every datagram sent or received wake the poller) and
// still reads, sends and closes the socket; the caller's UDPConn is closed.
func TestConnTakesTheSocketOutOfThePoller(t *testing.T) {
	if warm, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err == nil {
		warm.Close() // the poller's own descriptors exist from here on
	}
	before := openFDs(t)
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ino := socketInode(t, uc)
	if !polled(t, ino) {
		t.Skip("cannot see Go's poller watch a fresh UDPConn here")
	}
	c, err := udpio.New(uc)
	if err != nil {
		t.Fatal(err)
	}
	if polled(t, ino) {
		t.Error("the socket is still in Go's poller after New")
	}
	if _, err := uc.WriteToUDPAddrPort([]byte("x"), netip.MustParseAddrPort("127.0.0.1:9")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the caller's UDPConn after New: write error %v, want net.ErrClosed", err)
	}

	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := peer.WriteToUDPAddrPort([]byte("hello"), addr); err != nil {
		t.Fatal(err)
	}
	r := c.NewReader()
	pkts := []udpio.Packet{{Buf: make([]byte, 64)}, {Buf: make([]byte, 64)}}
	n, err := r.Read(pkts)
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	if err != nil || n != 1 || string(pkts[0].Buf[:pkts[0].N]) != "hello" || pkts[0].From != peerAddr {
		t.Fatalf("Read = %d, %v, %q from %v; want hello from %v", n, err, pkts[0].Buf[:pkts[0].N], pkts[0].From, peerAddr)
	}
	d := c.Dest(peerAddr, netip.Addr{})
	if err := c.Send([]byte("back"), &d); err != nil {
		t.Fatal(err)
	}
	b := c.NewBatch()
	b.Add([]byte("batched"), &d, 1)
	b.Flush()
	buf := make([]byte, 64)
	peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	for _, want := range []string{"back", "batched"} {
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != want || from != addr {
			t.Fatalf("peer read %q from %v, %v; want %q from %v", buf[:n], from, err, want, addr)
		}
	}
	peer.Close()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(pkts); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
	if after := openFDs(t); after != before {
		t.Errorf("open descriptors: %d before, %d after Close", before, after)
	}
	// The port is free again: the socket itself was closed.
	again, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatalf("the port after Close: %v", err)
	}
	again.Close()
}

// A Read waiting in the kernel returns when the deadline is moved into the
// past and when the Conn is closed, and waits again once the deadline is
// cleared.
func TestReaderWakesForDeadlineAndClose(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	r := c.NewReader()
	read := func() <-chan error {
		errc := make(chan error, 1)
		go func() {
			_, err := r.Read([]udpio.Packet{{Buf: make([]byte, 64)}})
			errc <- err
		}()
		return errc
	}
	quiet := func(errc <-chan error) {
		t.Helper()
		select {
		case err := <-errc:
			t.Fatalf("Read returned %v with nothing to read", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	wait := func(errc <-chan error, want error) {
		t.Helper()
		select {
		case err := <-errc:
			if !errors.Is(err, want) {
				t.Fatalf("Read returned %v, want %v", err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Read still waits; want %v", want)
		}
	}

	errc := read()
	quiet(errc)
	c.SetReadDeadline(time.Unix(1, 0))
	wait(errc, os.ErrDeadlineExceeded)

	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	wait(read(), os.ErrDeadlineExceeded) // a deadline in the future passes by itself

	c.SetReadDeadline(time.Time{})
	errc = read()
	quiet(errc)
	c.Close()
	wait(errc, net.ErrClosed)
}

// With IP_RECVERR an ICMP error wakes a waiting Read, which says so
// (ErrQueuedErrors, or the errno the kernel hands the next read); once the
// queue is drained Read waits again and returns the next datagram.
func TestReaderReportsQueuedErrors(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	if err := c.EnableRecvErr(); err != nil {
		t.Fatal(err)
	}
	r := c.NewReader()
	pkts := []udpio.Packet{{Buf: make([]byte, 64)}}
	send(t, c, []byte("x"), deadPort(t, "127.0.0.1"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := r.Read(pkts)
	if !errors.Is(err, udpio.ErrQueuedErrors) && !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Read after an ICMP error: %v", err)
	}
	var got []netip.AddrPort
	for deadline := time.Now().Add(5 * time.Second); len(got) == 0; {
		c.DrainErrors(func(dst netip.AddrPort, _ syscall.Errno) { got = append(got, dst) })
		if time.Now().After(deadline) {
			t.Fatal("no error drained")
		}
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.WriteToUDPAddrPort([]byte("next"), c.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		n, err := r.Read(pkts)
		if err == nil && n == 1 {
			if s := string(pkts[0].Buf[:pkts[0].N]); s != "next" {
				t.Fatalf("read %q, want next", s)
			}
			return
		}
		if i == 100 {
			t.Fatalf("Read keeps failing after the drain: %v", err)
		}
		if err != nil && !errors.Is(err, udpio.ErrQueuedErrors) && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("Read: %v", err)
		}
		c.DrainErrors(func(netip.AddrPort, syscall.Errno) {})
	}
}

// readInThread starts r.Read(pkts) on a goroutine locked to its thread and
// returns that thread's id and the Read's result.
func readInThread(r *udpio.Reader, pkts []udpio.Packet) (tid int, done <-chan error) {
	tids, errc := make(chan int, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- unix.Gettid()
		_, err := r.Read(pkts)
		errc <- err
	}()
	return <-tids, errc
}

// waitSyscall polls until thread tid of this process sleeps in system call
// nr (/proc/self/task/<tid>/syscall), or fails the test after 5 s.
func waitSyscall(t *testing.T, tid int, nr uintptr) {
	t.Helper()
	path := filepath.Join("/proc/self/task", strconv.Itoa(tid), "syscall")
	want := strconv.FormatUint(uint64(nr), 10)
	var last string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Skip("no /proc/self/task/<tid>/syscall:", err)
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			if last = f[0]; last == want {
				return
			}
		}
	}
	t.Fatalf("thread %d sleeps in system call %s, want %s", tid, last, want)
}

// A Read without a deadline waits in recvmmsg itself, one system call per
// batch as a minimal loop makes (no poll before it), and returns the
// datagram that wakes it; an ICMP error wakes it too.
func TestReaderWaitsInRecvmmsg(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	if err := c.EnableRecvErr(); err != nil {
		t.Fatal(err)
	}
	r := c.NewReader()
	pkts := []udpio.Packet{{Buf: make([]byte, 64)}}
	tid, done := readInThread(r, pkts)
	waitSyscall(t, tid, unix.SYS_RECVMMSG)

	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.WriteToUDPAddrPort([]byte("wake"), c.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || pkts[0].From != peer.LocalAddr().(*net.UDPAddr).AddrPort() || string(pkts[0].Buf[:pkts[0].N]) != "wake" {
			t.Fatalf("Read = %v, %q from %v; want wake from the peer", err, pkts[0].Buf[:pkts[0].N], pkts[0].From)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a datagram did not wake the Read")
	}

	tid, done = readInThread(r, pkts)
	waitSyscall(t, tid, unix.SYS_RECVMMSG)
	send(t, c, []byte("x"), deadPort(t, "127.0.0.1"))
	select {
	case err := <-done:
		if !errors.Is(err, udpio.ErrQueuedErrors) && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("Read after an ICMP error: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an ICMP error did not wake the Read")
	}
}

// StopReading wakes a Read waiting in recvmmsg, and reading stays stopped
// (a cleared deadline does not restart it, and datagrams that come later
// are not handed out, not even as empty ones), while the socket still
// sends.
func TestStopReadingWakesTheReaderForGood(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	r := c.NewReader()
	pkts := []udpio.Packet{{Buf: make([]byte, 64)}, {Buf: make([]byte, 64)}}
	tid, done := readInThread(r, pkts)
	waitSyscall(t, tid, unix.SYS_RECVMMSG)
	c.StopReading()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read after StopReading: %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("StopReading did not wake the Read")
	}

	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	addr := c.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := peer.WriteToUDPAddrPort([]byte("late"), addr); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Time{})
	if n, err := r.Read(pkts); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after StopReading and a cleared deadline = %d, %v; want 0, os.ErrDeadlineExceeded", n, err)
	}

	d := c.Dest(peer.LocalAddr().(*net.UDPAddr).AddrPort(), netip.Addr{})
	if err := c.Send([]byte("still sends"), &d); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, from, err := peer.ReadFromUDPAddrPort(buf); err != nil || from != addr || string(buf[:n]) != "still sends" {
		t.Fatalf("peer read %q from %v, %v; want \"still sends\" from %v", buf[:n], from, err, addr)
	}
}
