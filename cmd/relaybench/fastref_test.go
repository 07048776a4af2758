//go:build linux

package main

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFastRefDelivers runs the batch and coalesce references in process on
// loopback with a small room: after a login, a quit (which moves the last
// member into the hole) and a chat from the member who left, every chat
// reaches every other member exactly once and in order through every sender
// thread (member i is sent to by sender i mod the senders), never its sender, and
// nothing reaches the member who left.
func TestFastRefDelivers(t *testing.T) {
	for _, coalesce := range []bool{false, true} {
		name := refBatch
		if coalesce {
			name = refCoalesce
		}
		t.Run(name, func(t *testing.T) { testFastRef(t, coalesce) })
	}
}

func testFastRef(t *testing.T, coalesce bool) {
	f, err := startFastRef("127.0.0.1:0", coalesce, 200) // a small budget: several datagrams per packing
	if err != nil {
		t.Fatal(err)
	}
	defer f.stop()
	ref := net.UDPAddrFromAddrPort(f.addr())
	const members, quitter, chats = 9, 2, 300
	senders := []int{0, 1, 5, 8} // 8 takes the quitter's index
	conns := make([]*net.UDPConn, members)
	for i := range conns {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadBuffer(4 << 20)
		conns[i] = c
	}
	ask := func(i int, req, want string) {
		t.Helper()
		buf := make([]byte, 2048)
		if _, err := conns[i].WriteToUDP([]byte(req), ref); err != nil {
			t.Fatal(err)
		}
		_ = conns[i].SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := conns[i].ReadFromUDP(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("%q: got %q, %v; want %q", req, buf[:n], err, want)
		}
	}
	for i := range conns {
		ask(i, fmt.Sprintf("L m%d", i), "OK")
	}
	ask(quitter, fmt.Sprintf("Q m%d", quitter), "EXIT")
	if _, err := conns[quitter].WriteToUDP([]byte("C m2 not a member any more"), ref); err != nil {
		t.Fatal(err)
	}

	got := make([][]string, members)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := chats * len(senders)
			for _, s := range senders {
				if s == i {
					want -= chats
				}
			}
			if i == quitter {
				want = 0
			}
			buf := make([]byte, 2048)
			deadline := time.Now().Add(5 * time.Second)
			if want == 0 {
				deadline = time.Now().Add(time.Second)
			}
			_ = conns[i].SetReadDeadline(deadline)
			for len(got[i]) < want || want == 0 {
				n, _, err := conns[i].ReadFromUDP(buf)
				if err != nil {
					return
				}
				if !coalesce && bytes.IndexByte(buf[:n], '\n') >= 0 {
					got[i] = append(got[i], "batch packed lines: "+string(buf[:n]))
					continue
				}
				if n > 200 && bytes.IndexByte(buf[:n], '\n') >= 0 {
					got[i] = append(got[i], "over budget: "+string(buf[:n]))
				}
				got[i] = append(got[i], strings.Split(string(buf[:n]), "\n")...)
			}
			// Anything more is a duplicate.
			_ = conns[i].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, _, err := conns[i].ReadFromUDP(buf); err == nil {
				got[i] = append(got[i], "extra: "+string(buf[:n]))
			}
		}()
	}
	// Bursts from every sender, so read batches hold several senders' chats.
	for q := 0; q < chats; q += 10 {
		for _, s := range senders {
			for k := q; k < q+10; k++ {
				if _, err := conns[s].WriteToUDP(fmt.Appendf(nil, "C m%d line %04d", s, k), ref); err != nil {
					t.Fatal(err)
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()

	for i := range conns {
		if i != quitter {
			next := map[int]int{}
			for _, line := range got[i] {
				var s, k int
				if _, err := fmt.Sscanf(line, "m%d says: line %d", &s, &k); err != nil || k != next[s] || s == i {
					t.Errorf("member %d: unexpected %q (want m%d's line %d next)", i, line, s, next[s])
					break
				}
				next[s]++
			}
			for _, s := range senders {
				if s != i && next[s] != chats {
					t.Errorf("member %d: %d of m%d's %d lines", i, next[s], s, chats)
				}
			}
		}
		if i == quitter && len(got[i]) != 0 {
			t.Errorf("member %d left but got %d lines: %q", i, len(got[i]), got[i][0])
		}
	}
}
