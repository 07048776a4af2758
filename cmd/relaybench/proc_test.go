//go:build linux

package main

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWaitLoginSlow: a relay whose login takes longer than the probe's
// 100 ms wait (one that claims names in NATS) is still found ready, and
// the probe logs in once, from one address, and quits: a name is taken by
// the first address that asked, so a probe that asked again from a new
// socket would be refused for as long as it tried, and would leave the
// first one in the room.
func TestWaitLoginSlow(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type outcome struct {
		logins []netip.AddrPort // addresses that were given the name
		quit   bool             // the holder quit
		taken  int              // logins refused: the name was held by another address
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		var holder netip.AddrPort
		var okAt time.Time // when the holder's login completes
		buf := make([]byte, 256)
		defer func() { done <- o }()
		for {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p := string(buf[:n])
			switch {
			case p == "L probe7" && !holder.IsValid():
				holder, okAt = from, time.Now().Add(300*time.Millisecond)
				o.logins = append(o.logins, from)
				time.AfterFunc(time.Until(okAt), func() { _, _ = conn.WriteToUDPAddrPort([]byte("OK"), from) })
			case p == "L probe7" && from != holder:
				o.taken++
				_, _ = conn.WriteToUDPAddrPort([]byte("Name taken, choose another"), from)
			case p == "L probe7" && time.Now().After(okAt):
				_, _ = conn.WriteToUDPAddrPort([]byte("OK"), from) // a repeat
			case strings.HasPrefix(p, "Q ") && from == holder:
				o.quit = true
				return
			}
		}
	}()
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := waitLoginAs("probe7", addr, 3*time.Second, make(chan struct{})); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if len(o.logins) != 1 || !o.quit || o.taken != 0 {
		t.Errorf("logged in from %v, quit %v, refused as taken %d times: want one address that quit, never refused", o.logins, o.quit, o.taken)
	}
}

// TestCPUReadingsResolveAShortStep: the tool's CPU readings see a
// millisecond of work as a millisecond, not as 0 or a 10 ms tick, so a short
// step's relay CPU per delivery is never reported as 0. A thread spins until
// its own clock says it has run 1 ms; the reading then is 1 ms and a little,
// and the process's clock, read as the tool reads a relay's, moved at least
// as much.
func TestCPUReadingsResolveAShortStep(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	proc0, err1 := processCPU(os.Getpid())
	self0, err2 := selfCPU()
	t0, err3 := tidCPU(tid)
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatalf("reading the CPU clocks: %v, %v, %v", err1, err2, err3)
	}
	deadline := time.Now().Add(5 * time.Second)
	t1 := t0
	for t1-t0 < 0.001 && time.Now().Before(deadline) {
		t1, _ = tidCPU(tid)
	}
	proc1, _ := processCPU(os.Getpid())
	self1, _ := selfCPU()
	if d := t1 - t0; d < 0.001 || d >= 0.005 {
		t.Errorf("a 1 ms spin read as %.6f s of the thread's CPU", d)
	}
	if proc1-proc0 < t1-t0 || self1-self0 < t1-t0 {
		t.Errorf("the process's CPU moved %.6f s (self %.6f s), less than its thread's %.6f s", proc1-proc0, self1-self0, t1-t0)
	}
}
