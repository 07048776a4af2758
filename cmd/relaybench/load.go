//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Scenario is one measured load step.
type Scenario struct {
	Members   int
	Senders   int
	Rate      int           // offered chats/s, all senders together
	Duration  time.Duration // sending time
	Receivers int           // receiver goroutines (each its own epoll)
	RcvBuf    int           // SO_RCVBUF(FORCE) bytes per member socket
	Drain     time.Duration // longest wait for stragglers after the last send
}

// textLen is the size of every chat text; it carries sender, seq and timestamp.
const textLen = 64

// member is one classic client: a raw non-blocking UDP socket, outside the Go
// poller, so that receivers are woken by their own epoll once per batch and not
// per datagram.
type member struct {
	fd   int
	name string
}

func openMember(name string, rcvbuf int) (*member, error) {
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
	return &member{fd: fd, name: name}, nil
}

func sockaddr(ap netip.AddrPort) *unix.SockaddrInet4 {
	return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
}

// login sends "L name" until "OK" arrives (3 tries, 1 s each). Datagrams other
// than the reply are ignored.
func (m *member) login(relay *unix.SockaddrInet4) error {
	buf := make([]byte, 2048)
	for try := 0; try < 3; try++ {
		if err := unix.Sendto(m.fd, []byte("L "+m.name), 0, relay); err != nil {
			return err
		}
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			pfd := []unix.PollFd{{Fd: int32(m.fd), Events: unix.POLLIN}}
			n, err := unix.Poll(pfd, int(time.Until(deadline)/time.Millisecond)+1)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return err
			}
			if n == 0 {
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

// Result is what one relay did in one scenario.
type Result struct {
	Relay          string  `json:"relay"`
	Members        int     `json:"members"`
	Senders        int     `json:"senders"`
	OfferedRate    int     `json:"offered_chats_per_s"`
	Sent           int64   `json:"chats_sent"`
	SendErrors     int64   `json:"send_errors"`
	Expected       int64   `json:"deliveries_expected"`
	Delivered      int64   `json:"deliveries_unique"`
	Duplicates     int64   `json:"duplicates"`
	Reordered      int64   `json:"reordered"`
	Other          int64   `json:"other_datagrams"`
	Ratio          float64 `json:"delivery_ratio"`
	DeliveriesPerS float64 `json:"deliveries_per_s"`
	Window         float64 `json:"window_s"`
	P50us          float64 `json:"p50_us"`
	P99us          float64 `json:"p99_us"`
	P999us         float64 `json:"p999_us"`
	MaxUs          float64 `json:"max_us"`
	RelayCPUs      float64 `json:"relay_cpu_s"` // -1: unknown
	CPUusPerDeliv  float64 `json:"relay_cpu_us_per_delivery"`
	ToolCPUcores   float64 `json:"tool_cpu_cores"`
	RecvThreadMax  float64 `json:"receiver_thread_cpu_max"` // busiest receiver thread, in cores
	ToolSaturated  bool    `json:"tool_saturated"`
	VsNaive        float64 `json:"deliveries_vs_naive,omitempty"`
	VsBatch        float64 `json:"deliveries_vs_batch,omitempty"`
}

// recvStats is owned by one receiver goroutine.
type recvStats struct {
	seen      [][]uint64 // [member-local*senders+sender] bitset of seqs
	last      []int64    // last seq per (member-local, sender), -1 none
	lat       []int64    // ns
	delivered int64
	dups      int64
	reord     int64
	other     int64
	lastRecv  int64 // unixnano of the last chat delivery
	tid       int
}

// runLoad logs in the members, sends, receives and measures. cpu reads the
// relay's CPU seconds (nil: unknown).
func runLoad(relayAddr netip.AddrPort, sc Scenario, cpu func() (float64, error)) (Result, error) {
	res := Result{Members: sc.Members, Senders: sc.Senders, OfferedRate: sc.Rate, RelayCPUs: -1}
	if sc.Members < 2 || sc.Senders < 1 || sc.Senders > sc.Members || sc.Rate < 1 {
		return res, errors.New("need members >= 2, 1 <= senders <= members, rate >= 1")
	}
	if sc.Receivers < 1 {
		sc.Receivers = 1
	}
	if sc.Receivers > sc.Members {
		sc.Receivers = sc.Members
	}
	ra := sockaddr(relayAddr)
	members := make([]*member, 0, sc.Members)
	defer func() {
		for _, m := range members {
			_ = unix.Sendto(m.fd, []byte("Q "+m.name), 0, ra)
			unix.Close(m.fd)
		}
	}()
	for i := 0; i < sc.Members; i++ {
		m, err := openMember(fmt.Sprintf("m%04d", i), sc.RcvBuf)
		if err != nil {
			return res, err
		}
		members = append(members, m)
		if err := m.login(ra); err != nil {
			return res, err
		}
	}
	// Senders are members 0..S-1; every member receives.
	perSender := int64(float64(sc.Rate)/float64(sc.Senders)*sc.Duration.Seconds()) + 16

	var stop atomic.Bool
	stats := make([]*recvStats, sc.Receivers)
	var rwg sync.WaitGroup
	ready := make(chan error, sc.Receivers)
	for r := 0; r < sc.Receivers; r++ {
		var mine []*member
		var idx []int
		for i := r; i < len(members); i += sc.Receivers {
			mine = append(mine, members[i])
			idx = append(idx, i)
		}
		st := &recvStats{last: make([]int64, len(mine)*sc.Senders), seen: make([][]uint64, len(mine)*sc.Senders)}
		for i := range st.last {
			st.last[i] = -1
			st.seen[i] = make([]uint64, perSender/64+1)
		}
		stats[r] = st
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			receiver(mine, idx, sc.Senders, st, &stop, ready)
		}()
	}
	for r := 0; r < sc.Receivers; r++ {
		if err := <-ready; err != nil {
			stop.Store(true)
			rwg.Wait()
			return res, err
		}
	}

	threadCPU := func() []float64 {
		out := make([]float64, len(stats))
		for i, st := range stats {
			out[i], _ = procCPU(fmt.Sprintf("/proc/self/task/%d/stat", st.tid))
		}
		return out
	}
	selfBefore, _ := procCPU("/proc/self/stat")
	thBefore := threadCPU()
	var relayBefore float64 = -1
	if cpu != nil {
		if v, err := cpu(); err == nil {
			relayBefore = v
		}
	}
	start := time.Now()

	var sent, sendErr atomic.Int64
	var swg sync.WaitGroup
	interval := time.Duration(float64(time.Second) * float64(sc.Senders) / float64(sc.Rate))
	for s := 0; s < sc.Senders; s++ {
		swg.Add(1)
		go func(s int) {
			defer swg.Done()
			m := members[s]
			ra := sockaddr(relayAddr) // its own: Sendto writes into the Sockaddr
			n := int64(float64(sc.Rate) / float64(sc.Senders) * sc.Duration.Seconds())
			if n > perSender-16 {
				n = perSender - 16
			}
			prefix := "C " + m.name + " "
			msg := make([]byte, len(prefix)+textLen)
			copy(msg, prefix)
			text := msg[len(prefix):]
			for i := range text {
				text[i] = 'x'
			}
			// Stagger senders across one interval.
			begin := start.Add(interval * time.Duration(s) / time.Duration(sc.Senders))
			for q := int64(0); q < n; q++ {
				at := begin.Add(interval * time.Duration(q))
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
				// text: "s=SS q=QQQQQQQQQQ t=TTTTTTTTTTTTTTTTTTT " then x padding
				encodeText(text, s, q, time.Now().UnixNano())
				if err := unix.Sendto(m.fd, msg, 0, ra); err != nil {
					sendErr.Add(1)
					continue
				}
				sent.Add(1)
			}
		}(s)
	}
	swg.Wait()
	sendEnd := time.Now()
	res.Sent, res.SendErrors = sent.Load(), sendErr.Load()
	res.Expected = res.Sent * int64(sc.Members-1)

	// Drain: wait until everything arrived, or nothing arrived for 300 ms, or sc.Drain.
	deadline := sendEnd.Add(sc.Drain)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		var got, lastRecv int64
		for _, st := range stats {
			got += atomic.LoadInt64(&st.delivered)
			if l := atomic.LoadInt64(&st.lastRecv); l > lastRecv {
				lastRecv = l
			}
		}
		if got >= res.Expected {
			break
		}
		quiet := time.Since(time.Unix(0, lastRecv))
		if lastRecv == 0 {
			quiet = time.Since(sendEnd)
		}
		if quiet > 300*time.Millisecond {
			break
		}
	}
	var relayAfter float64 = -1
	if cpu != nil {
		if v, err := cpu(); err == nil {
			relayAfter = v
		}
	}
	thAfter := threadCPU()
	selfAfter, _ := procCPU("/proc/self/stat")
	stop.Store(true)
	rwg.Wait()

	var lastRecv int64
	var lat []int64
	for _, st := range stats {
		res.Delivered += st.delivered
		res.Duplicates += st.dups
		res.Reordered += st.reord
		res.Other += st.other
		lat = append(lat, st.lat...)
		if st.lastRecv > lastRecv {
			lastRecv = st.lastRecv
		}
	}
	end := sendEnd
	if t := time.Unix(0, lastRecv); t.After(end) {
		end = t
	}
	res.Window = end.Sub(start).Seconds()
	if res.Window > 0 {
		res.DeliveriesPerS = float64(res.Delivered) / res.Window
	}
	if res.Expected > 0 {
		res.Ratio = float64(res.Delivered) / float64(res.Expected)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(p * float64(len(lat)-1))
		return float64(lat[i]) / 1e3
	}
	res.P50us, res.P99us, res.P999us = pct(0.50), pct(0.99), pct(0.999)
	if len(lat) > 0 {
		res.MaxUs = float64(lat[len(lat)-1]) / 1e3
	}
	measured := time.Since(start).Seconds()
	if relayBefore >= 0 && relayAfter >= 0 {
		res.RelayCPUs = relayAfter - relayBefore
		if res.Delivered > 0 {
			res.CPUusPerDeliv = res.RelayCPUs * 1e6 / float64(res.Delivered)
		}
	}
	if measured > 0 {
		res.ToolCPUcores = (selfAfter - selfBefore) / measured
		for i := range thAfter {
			if c := (thAfter[i] - thBefore[i]) / measured; c > res.RecvThreadMax {
				res.RecvThreadMax = c
			}
		}
	}
	res.ToolSaturated = res.RecvThreadMax > 0.9 || res.ToolCPUcores > 0.9*float64(runtime.NumCPU())
	return res, nil
}

func encodeText(text []byte, s int, q, t int64) {
	b := text[:0]
	b = append(b, "s="...)
	b = appendPad(b, int64(s), 2)
	b = append(b, " q="...)
	b = appendPad(b, q, 10)
	b = append(b, " t="...)
	b = appendPad(b, t, 19)
	_ = b
}

func appendPad(b []byte, v int64, w int) []byte {
	var tmp [20]byte
	s := strconv.AppendInt(tmp[:0], v, 10)
	for i := len(s); i < w; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// parseChat parses "NAME says: s=SS q=QQ.. t=TT.. xxx" into sender, seq, time.
func parseChat(p []byte) (s int, q, t int64, ok bool) {
	i := bytes.Index(p, []byte(" says: s="))
	if i < 0 {
		return
	}
	p = p[i+len(" says: "):]
	// s=SS q=QQQQQQQQQQ t=TTTTTTTTTTTTTTTTTTTxxx...
	if len(p) < textLen || p[4] != ' ' || p[17] != ' ' || p[18] != 't' {
		return
	}
	a, e1 := strconv.Atoi(string(p[2:4]))
	b, e2 := strconv.ParseInt(string(p[7:17]), 10, 64)
	c, e3 := strconv.ParseInt(string(p[20:39]), 10, 64)
	if e1 != nil || e2 != nil || e3 != nil {
		return
	}
	return a, b, c, true
}

const batch = 64

// receiver owns a share of the member sockets: one epoll (level-triggered) over
// them and, on readiness, recvmmsg(MSG_DONTWAIT) with 64 messages until EAGAIN.
// It is pinned to its OS thread so that its CPU time can be read from
// /proc/self/task/TID/stat.
func receiver(ms []*member, idx []int, senders int, st *recvStats, stop *atomic.Bool, ready chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st.tid = unix.Gettid()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		ready <- err
		return
	}
	defer unix.Close(ep)
	local := make(map[int32]int, len(ms))
	for i, m := range ms {
		local[int32(m.fd)] = i
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(m.fd)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, m.fd, &ev); err != nil {
			ready <- err
			return
		}
	}
	_ = idx
	ready <- nil

	bufs := make([][]byte, batch)
	iovs := make([]unix.Iovec, batch)
	hdrs := make([]unix.Mmsghdr, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.SetIovlen(1)
	}
	events := make([]unix.EpollEvent, 64)
	for !stop.Load() {
		n, err := unix.EpollWait(ep, events, 50)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for e := 0; e < n; e++ {
			fd := events[e].Fd
			li := local[fd]
			for rounds := 0; rounds < 64; rounds++ { // bounded per wake-up; level-triggered epoll brings us back
				for i := range hdrs {
					hdrs[i].Len = 0
				}
				r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), batch, unix.MSG_DONTWAIT, 0, 0)
				if errno != 0 || int(r) <= 0 {
					break
				}
				now := time.Now().UnixNano()
				for i := 0; i < int(r); i++ {
					p := bufs[i][:hdrs[i].Len]
					s, q, t, ok := parseChat(p)
					if !ok || s < 0 || s >= senders {
						st.other++
						continue
					}
					k := li*senders + s
					set := st.seen[k]
					for int(q/64) >= len(set) {
						set = append(set, make([]uint64, len(set)+1)...)
						st.seen[k] = set
					}
					if q >= 0 && set[q/64]&(1<<(q%64)) != 0 {
						st.dups++
						continue
					}
					if q >= 0 {
						set[q/64] |= 1 << (q % 64)
					}
					if q < st.last[k] {
						st.reord++
					} else {
						st.last[k] = q
					}
					st.lat = append(st.lat, now-t)
					atomic.AddInt64(&st.delivered, 1)
				}
				atomic.StoreInt64(&st.lastRecv, now)
				if int(r) < batch {
					break
				}
			}
		}
	}
}
