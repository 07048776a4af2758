//go:build linux

package relaytest_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/relaytest"
)

// pair is a UDP sender and receiver on 127.0.0.1.
type pair struct {
	send, recv *net.UDPConn
}

func newPair(t *testing.T) pair {
	t.Helper()
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// A large buffer, so that the socket does not add its own loss.
	_ = recv.SetReadBuffer(4 << 20)
	send, err := net.DialUDP("udp4", nil, recv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		recv.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { send.Close(); recv.Close() })
	return pair{send, recv}
}

// measure sends n numbered datagrams, paced so that the receiver keeps up,
// and returns how many distinct ones arrived.
func (p pair) measure(t *testing.T, n int) int {
	t.Helper()
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		seen := make([]bool, n)
		buf := make([]byte, 64)
		for {
			m, err := p.recv.Read(buf)
			if err != nil {
				return // the deadline below
			}
			if m != 4 {
				continue
			}
			if i := int(binary.BigEndian.Uint32(buf[:m])); i < n && !seen[i] {
				seen[i] = true
				got.Add(1)
			}
		}
	}()
	var b [4]byte
	for i := range n {
		binary.BigEndian.PutUint32(b[:], uint32(i))
		if _, err := p.send.Write(b[:]); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond)
		}
	}
	// Wait until nothing more arrives.
	for last := int64(-1); got.Load() != last; {
		last = got.Load()
		time.Sleep(50 * time.Millisecond)
	}
	p.recv.SetReadDeadline(time.Unix(1, 0))
	<-done
	return int(got.Load())
}

func TestLossyNetns(t *testing.T) {
	const (
		n         = 5000
		loss      = 10
		tolerance = 3.0 // percentage points; one standard deviation is 0.42
	)
	ns := relaytest.LossyNetns(t, loss)

	var p pair
	var snmpBefore map[string]int
	if err := ns.Do(func() {
		p = newPair(t)
		snmpBefore = udpSNMP(t)
	}); err != nil {
		t.Fatal(err)
	}
	// The sockets now work from this goroutine, outside the namespace.
	received := p.measure(t, n)
	var snmpAfter map[string]int
	if err := ns.Do(func() { snmpAfter = udpSNMP(t) }); err != nil {
		t.Fatal(err)
	}
	dropped, err := ns.Dropped()
	if err != nil {
		t.Error(err)
	}
	bufErrs := snmpAfter["RcvbufErrors"] - snmpBefore["RcvbufErrors"]
	got := 100 * float64(n-received) / n
	t.Logf("namespace %s: %d of %d arrived, loss %.2f%% (nftables dropped %d, receive-buffer drops %d)",
		ns.Name, received, n, got, dropped, bufErrs)
	if bufErrs > 0 {
		t.Errorf("%d datagrams overflowed the receive buffer: the measurement is not the rule's alone", bufErrs)
	}
	if err == nil && dropped != n-received {
		t.Errorf("%d datagrams missing but the rule dropped %d: some loss came from elsewhere", n-received, dropped)
	}
	if math.Abs(got-loss) > tolerance {
		t.Errorf("loss %.2f%%, want %d%% ± %.0f", got, loss, tolerance)
	}

	// The host's loopback is unaffected.
	host := newPair(t)
	if hostReceived := host.measure(t, n); hostReceived < n*995/1000 {
		t.Errorf("host loopback: %d of %d arrived; the namespace's rule leaked out", hostReceived, n)
	} else {
		t.Logf("host loopback: %d of %d arrived", hostReceived, n)
	}
}

// TestNetnsIsolation: a socket made in Do lives in the namespace, not on
// the host, and Do restores the thread.
func TestNetnsIsolation(t *testing.T) {
	ns := relaytest.LossyNetns(t, 0)
	var inside *net.UDPConn
	if err := ns.Do(func() {
		var err error
		inside, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()

	// From the host, the namespace's port is unreachable: the datagram
	// never arrives there.
	host, err := net.DialUDP("udp4", nil, inside.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	host.Write([]byte("from the host"))
	inside.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, _, err := inside.ReadFrom(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a host datagram reached the namespace's socket (err %v)", err)
	}

	// Many calls: every thread comes back to the host namespace.
	hostNS, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		var in string
		if err := ns.Do(func() { in, _ = os.Readlink("/proc/thread-self/ns/net") }); err != nil {
			t.Fatal(err)
		}
		if in == hostNS {
			t.Fatal("Do did not switch the namespace")
		}
	}
	for range 50 {
		done := make(chan string)
		go func() {
			s, _ := os.Readlink("/proc/thread-self/ns/net")
			done <- s
		}()
		if s := <-done; s != hostNS {
			t.Fatalf("a goroutine ran in %s after Do, want the host's %s", s, hostNS)
		}
	}
}

func TestNetnsDoPanics(t *testing.T) {
	ns := relaytest.LossyNetns(t, 0)
	defer func() {
		if v := recover(); v != "boom" {
			t.Errorf("recovered %v, want boom", v)
		}
	}()
	ns.Do(func() { panic("boom") })
	t.Error("Do returned after a panic")
}

// udpSNMP reads the UDP counters of the calling thread's namespace.
func udpSNMP(t *testing.T) map[string]int {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		m := map[string]int{}
		for i, v := range f[1:] {
			var x int
			fmt.Sscan(v, &x)
			m[names[i]] = x
		}
		return m
	}
	t.Fatal("no Udp line in snmp")
	return nil
}
