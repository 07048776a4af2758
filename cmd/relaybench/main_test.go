//go:build linux

package main

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestEncodeParse(t *testing.T) {
	text := make([]byte, textLen)
	for i := range text {
		text[i] = 'x'
	}
	encodeText(text, 3, 42, 1234567890123456789)
	s, q, ts, ok := parseChat(append([]byte("m0003 says: "), text...))
	if !ok || s != 3 || q != 42 || ts != 1234567890123456789 {
		t.Fatalf("parseChat = %d %d %d %v", s, q, ts, ok)
	}
	if _, _, _, ok := parseChat([]byte("m0003 joined the chat room")); ok {
		t.Fatal("join notice parsed as a chat")
	}
}

// TestNaiveSmoke runs a tiny scenario against the in-process naive reference
// and checks the measurements: everything delivered once, in order.
func TestNaiveSmoke(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { serveNaive(conn); close(done) }()
	defer func() { conn.Close(); <-done }()
	ap := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	addr := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())

	sc := Scenario{Members: 10, Senders: 1, Rate: 200, Duration: 300 * time.Millisecond,
		Receivers: 2, RcvBuf: 1 << 20, Drain: 2 * time.Second}
	r, err := runLoad(addr, sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", r)
	if r.Sent != 60 || r.SendErrors != 0 {
		t.Errorf("sent %d (errors %d), want 60", r.Sent, r.SendErrors)
	}
	if r.Expected != r.Sent*9 || r.Delivered != r.Expected || r.Ratio != 1 {
		t.Errorf("delivered %d of %d, ratio %v", r.Delivered, r.Expected, r.Ratio)
	}
	if r.Duplicates != 0 || r.Reordered != 0 {
		t.Errorf("duplicates %d, reordered %d", r.Duplicates, r.Reordered)
	}
	if r.P50us <= 0 || r.P99us < r.P50us || r.MaxUs < r.P999us || r.P999us < r.P99us {
		t.Errorf("latency percentiles make no sense: %+v", r)
	}
	if r.DeliveriesPerS <= 0 || r.RelayCPUs != -1 {
		t.Errorf("deliveries/s %v, relay CPU %v (want unknown)", r.DeliveriesPerS, r.RelayCPUs)
	}
}

// TestBatchRefSmoke: the batch reference delivers too (in-process).
func TestBatchRefSmoke(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { serveBatch(conn); close(done) }()
	defer func() { conn.Close(); <-done }()
	ap := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	addr := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	sc := Scenario{Members: 10, Senders: 2, Rate: 200, Duration: 300 * time.Millisecond,
		Receivers: 2, RcvBuf: 1 << 20, Drain: 2 * time.Second}
	r, err := runLoad(addr, sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Delivered != r.Expected || r.Expected == 0 || r.Duplicates != 0 || r.Reordered != 0 {
		t.Errorf("batch reference: %+v", r)
	}
}
