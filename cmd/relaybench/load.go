//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/chatrelay/chatrelay/relay/wire"
	"golang.org/x/sys/unix"
)

// Scenario is one room and how a measured step runs in it.
type Scenario struct {
	Members   int
	Senders   int
	Duration  time.Duration // sending time per step
	Receivers int           // receiver goroutines (each its own epoll)
	RcvBuf    int           // SO_RCVBUF(FORCE) bytes per UDP member socket
	Drain     time.Duration // longest wait for stragglers after the last send
	Budget    int           // largest datagram a receiver must take whole (coalescing relays)
}

// batch is the number of messages per recvmmsg/sendmmsg call.
const batch = 64

// Result is what one relay did in one step.
type Result struct {
	Scenario       string  `json:"scenario,omitempty"`
	Relay          string  `json:"relay"`
	Proto          string  `json:"proto"`
	Members        int     `json:"members"`
	Senders        int     `json:"senders"`
	OfferedRate    int     `json:"offered_chats_per_s"`
	Sent           int64   `json:"chats_sent"`
	SendErrors     int64   `json:"send_errors"`
	Expected       int64   `json:"deliveries_expected"`
	Delivered      int64   `json:"deliveries_unique"`
	Duplicates     int64   `json:"duplicates"`
	Reordered      int64   `json:"reordered"`
	Echoes         int64   `json:"echoes"`          // a sender's own chat back (v2 does that); not a delivery
	Stale          int64   `json:"stale"`           // chats sent before this step began; not a delivery
	Other          int64   `json:"other_frames"`    // notices, joins, pongs, anything not a chat
	RxUnits        int64   `json:"rx_units"`        // datagrams (UDP) or reads with data (TCP) that arrived
	RxPerDeliv     float64 `json:"rx_per_delivery"` // RxUnits / Delivered
	Closed         int64   `json:"connections_closed,omitempty"`
	Ratio          float64 `json:"delivery_ratio"`
	DeliveriesPerS float64 `json:"deliveries_per_s"`
	Window         float64 `json:"window_s"`      // first send to last delivery
	SendWindow     float64 `json:"send_window_s"` // first send to last send
	P50us          float64 `json:"p50_us"`
	P99us          float64 `json:"p99_us"`
	P999us         float64 `json:"p999_us"`
	MaxUs          float64 `json:"max_us"`
	RelayCPUs      float64 `json:"relay_cpu_s"` // -1: unknown
	CPUusPerDeliv  float64 `json:"relay_cpu_us_per_delivery"`
	ToolCPUcores   float64 `json:"tool_cpu_cores"`
	RecvThreadMax  float64 `json:"receiver_thread_cpu_max"` // busiest receiver thread, in cores
	ToolSaturated  bool    `json:"tool_saturated"`
	ToolLimited    bool    `json:"tool_limited"` // UDP senders could not keep the schedule
	KeptUp         bool    `json:"kept_up"`      // the last delivery came soon after the schedule's end
	Sustained      bool    `json:"sustained"`    // ratio >= 0.999 and kept up
	VsNaive        float64 `json:"deliveries_vs_naive,omitempty"`
	VsBatch        float64 `json:"deliveries_vs_batch,omitempty"`
	VsCoalesce     float64 `json:"deliveries_vs_coalesce,omitempty"`
	VsNATS         float64 `json:"deliveries_vs_nats,omitempty"`
}

// session is a room of logged-in members on one relay; it runs steps.
type session struct {
	proto   Proto
	sc      Scenario
	members []*member
}

// dial opens sc.Members members, each its own socket, and logs them in one
// after another (classic L/OK, the v2 handshake, or a NATS subscription).
func dial(proto Proto, addr netip.AddrPort, sc Scenario) (*session, error) {
	if sc.Members < 2 || sc.Senders < 1 || sc.Senders > sc.Members || sc.Senders > 99 {
		return nil, errors.New("need members >= 2, 1 <= senders <= min(members, 99)")
	}
	if err := raiseFDLimit(uint64(sc.Members) + 256); err != nil {
		return nil, err
	}
	s := &session{proto: proto, sc: sc}
	buf := make([]byte, 65536)
	for i := 0; i < sc.Members; i++ {
		name := fmt.Sprintf("m%04d", i)
		var m *member
		var err error
		if proto == ProtoNATS {
			m, err = openNATSMember(name, i, addr)
		} else if m, err = openUDPMember(name, i, sc.RcvBuf, addr); err == nil {
			if proto == ProtoV2 {
				err = m.loginV2()
			} else {
				err = m.loginClassic()
			}
			if err != nil {
				m.close()
			}
		}
		if err != nil {
			s.close()
			return nil, err
		}
		s.members = append(s.members, m)
		if proto != ProtoNATS && i%32 == 31 {
			drainAll(s.members, buf)
		}
	}
	if proto != ProtoNATS {
		settle(s.members, buf)
	}
	return s, nil
}

// close closes every member's socket. Members do not quit first: the
// relay is stopped next, and N quits would cost it N fan-outs of a notice.
func (s *session) close() {
	for _, m := range s.members {
		m.close()
	}
	s.members = nil
}

// raiseFDLimit makes sure the process may open need descriptors, raising
// the soft RLIMIT_NOFILE up to the hard one if it must.
func raiseFDLimit(need uint64) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= need {
		return nil
	}
	if lim.Max < need {
		return fmt.Errorf("RLIMIT_NOFILE hard limit %d is below the %d descriptors needed (ulimit -Hn)", lim.Max, need)
	}
	lim.Cur = lim.Max
	return unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
}

// step offers rate chats/s for sc.Duration and measures at the receivers.
// cpu reads the relay's CPU seconds (nil: unknown). Chats left over from an
// earlier step are told apart by their send time and counted as stale.
func (s *session) step(rate int, cpu func() (float64, error)) (Result, error) {
	sc := s.sc
	res := Result{Proto: s.proto.String(), Members: sc.Members, Senders: sc.Senders, OfferedRate: rate, RelayCPUs: -1}
	if rate < 1 {
		return res, errors.New("rate must be at least 1")
	}
	nrecv := min(max(sc.Receivers, 1), len(s.members))
	perSender := int64(float64(rate) / float64(sc.Senders) * sc.Duration.Seconds())
	if perSender < 1 {
		return res, fmt.Errorf("%d chats/s for %v gives each of %d senders no chat to send", rate, sc.Duration, sc.Senders)
	}
	stepStart := time.Now().UnixNano()

	var stop atomic.Bool
	rs := make([]*receiver, nrecv)
	var rwg sync.WaitGroup
	ready := make(chan error, nrecv)
	for r := 0; r < nrecv; r++ {
		rc := &receiver{proto: s.proto, senders: sc.Senders, seqs: perSender, stepStart: stepStart}
		for i := r; i < len(s.members); i += nrecv {
			rc.ms = append(rc.ms, s.members[i])
		}
		rc.st.last = make([]int64, len(rc.ms)*sc.Senders)
		rc.st.seen = make([][]uint64, len(rc.ms)*sc.Senders)
		for i := range rc.st.last {
			rc.st.last[i] = -1
			rc.st.seen[i] = make([]uint64, perSender/64+1) // fixed: a seq beyond perSender is not ours
		}
		rs[r] = rc
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			rc.run(&stop, max(sc.Budget, 2048), ready)
		}()
	}
	for r := 0; r < nrecv; r++ {
		if err := <-ready; err != nil {
			stop.Store(true)
			rwg.Wait()
			return res, err
		}
	}

	threadCPU := func() []float64 {
		out := make([]float64, len(rs))
		for i, rc := range rs {
			out[i], _ = procCPU(fmt.Sprintf("/proc/self/task/%d/stat", rc.tid))
		}
		return out
	}
	selfBefore, _ := procCPU("/proc/self/stat")
	thBefore := threadCPU()
	relayBefore := -1.0
	if cpu != nil {
		if v, err := cpu(); err == nil {
			relayBefore = v
		}
	}
	start := time.Now()

	var sent, sendErr atomic.Int64
	var swg sync.WaitGroup
	interval := max(time.Duration(float64(time.Second)*float64(sc.Senders)/float64(rate)), 1)
	for si := 0; si < sc.Senders; si++ {
		swg.Add(1)
		go func(si int) {
			defer swg.Done()
			// Stagger senders across one interval.
			begin := start.Add(interval * time.Duration(si) / time.Duration(sc.Senders))
			if s.proto == ProtoNATS {
				sendTCP(s.members[si], si, perSender, begin, interval, &sent, &sendErr)
			} else {
				sendUDP(s.members[si], s.proto, si, perSender, begin, interval, &sent, &sendErr)
			}
		}(si)
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
		for _, rc := range rs {
			got += atomic.LoadInt64(&rc.st.delivered)
			lastRecv = max(lastRecv, atomic.LoadInt64(&rc.st.lastRecv))
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
	relayAfter := -1.0
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
	var lat hist
	for _, rc := range rs {
		st := &rc.st
		res.Delivered += st.delivered
		res.Duplicates += st.dups
		res.Reordered += st.reord
		res.Other += st.other
		res.Echoes += st.self
		res.Stale += st.stale
		res.RxUnits += st.rx
		res.Closed += st.closed
		lat.merge(&st.lat)
		lastRecv = max(lastRecv, st.lastRecv)
	}
	end := sendEnd
	if t := time.Unix(0, lastRecv); t.After(end) {
		end = t
	}
	res.Window = end.Sub(start).Seconds()
	res.SendWindow = sendEnd.Sub(start).Seconds()
	if res.Window > 0 {
		res.DeliveriesPerS = float64(res.Delivered) / res.Window
	}
	if res.Expected > 0 {
		res.Ratio = float64(res.Delivered) / float64(res.Expected)
	}
	if res.Delivered > 0 {
		res.RxPerDeliv = float64(res.RxUnits) / float64(res.Delivered)
	}
	res.P50us = float64(lat.quantile(0.50)) / 1e3
	res.P99us = float64(lat.quantile(0.99)) / 1e3
	res.P999us = float64(lat.quantile(0.999)) / 1e3
	res.MaxUs = float64(lat.quantile(1)) / 1e3
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
			res.RecvThreadMax = max(res.RecvThreadMax, (thAfter[i]-thBefore[i])/measured)
		}
	}
	res.ToolSaturated = res.RecvThreadMax > 0.9 || res.ToolCPUcores > 0.9*float64(runtime.NumCPU())
	// The schedule ends at Duration; late by more than 10% (+50 ms for
	// timer slack) means the senders could not keep it. Over UDP that is the
	// tool's limit; over TCP it is the broker's backpressure.
	late := res.SendWindow > sc.Duration.Seconds()*1.1+0.05
	res.ToolLimited = late && s.proto != ProtoNATS
	res.KeptUp = !late && res.Window <= sc.Duration.Seconds()*1.1+0.25
	res.Sustained = res.Ratio >= 0.999 && res.KeptUp
	return res, nil
}

// sendUDP sends n chats from m on the schedule begin + q*interval. When
// several are due (a late wake-up, or a high rate) they go in one sendmmsg,
// each still one chat per datagram, stamped with the time of sending.
func sendUDP(m *member, proto Proto, si int, n int64, begin time.Time, interval time.Duration, sent, errs *atomic.Int64) {
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
				b = appendV2Chat(b, m.nextID, text)
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

// recvStats is owned by one receiver goroutine; delivered and lastRecv are
// also read atomically while it runs.
type recvStats struct {
	seen      [][]uint64 // [member-local*senders+sender] bitset of seqs
	last      []int64    // last seq per (member-local, sender), -1 none
	lat       hist       // ns
	delivered int64
	lastRecv  int64 // unixnano of the last chat delivery
	dups      int64
	reord     int64
	other     int64
	self      int64
	stale     int64
	rx        int64
	closed    int64
}

// receiver owns a share of the member sockets during one step: one
// level-triggered epoll over them and, on readiness, recvmmsg(MSG_DONTWAIT)
// with 64 messages (UDP) or read with a 256 KiB buffer (TCP) until the
// socket is empty, bounded per wake-up. It is pinned to its OS thread so
// that its CPU time can be read from /proc/self/task/TID/stat.
type receiver struct {
	proto     Proto
	ms        []*member
	senders   int
	seqs      int64 // each sender sends seqs 0..seqs-1 in this step
	stepStart int64
	st        recvStats
	tid       int

	cur int   // NATS: the member whose stream natsScan is parsing
	now int64 // receive time of what is being parsed
}

func (r *receiver) run(stop *atomic.Bool, dgram int, ready chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r.tid = unix.Gettid()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		ready <- err
		return
	}
	defer unix.Close(ep)
	for i, m := range r.ms {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)} // Fd carries the member's local index
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, m.fd, &ev); err != nil {
			ready <- err
			return
		}
	}
	ready <- nil

	var udp udpBatch
	var tcpBuf []byte
	if r.proto == ProtoNATS {
		tcpBuf = make([]byte, 256<<10)
	} else {
		udp.init(dgram)
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
			li := int(events[e].Fd)
			if li < 0 || li >= len(r.ms) {
				continue
			}
			if r.proto == ProtoNATS {
				r.readTCP(ep, li, tcpBuf)
			} else {
				r.readUDP(li, &udp)
			}
		}
	}
}

// udpBatch is a receiver's recvmmsg vectors.
type udpBatch struct {
	bufs [][]byte
	iovs []unix.Iovec
	hdrs []unix.Mmsghdr
}

func (u *udpBatch) init(size int) {
	u.bufs = make([][]byte, batch)
	u.iovs = make([]unix.Iovec, batch)
	u.hdrs = make([]unix.Mmsghdr, batch)
	for i := range u.bufs {
		u.bufs[i] = make([]byte, size)
		u.iovs[i].Base = &u.bufs[i][0]
		u.iovs[i].SetLen(size)
		u.hdrs[i].Hdr.Iov = &u.iovs[i]
		u.hdrs[i].Hdr.SetIovlen(1)
	}
}

func (r *receiver) readUDP(li int, u *udpBatch) {
	fd := r.ms[li].fd
	for rounds := 0; rounds < 64; rounds++ { // bounded per wake-up; level-triggered epoll brings us back
		for i := range u.hdrs {
			u.hdrs[i].Len = 0
		}
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&u.hdrs[0])), batch, unix.MSG_DONTWAIT, 0, 0)
		if errno != 0 || int(n) <= 0 {
			return
		}
		r.now = time.Now().UnixNano()
		for i := 0; i < int(n); i++ {
			r.st.rx++
			r.datagram(li, u.bufs[i][:u.hdrs[i].Len])
		}
		if int(n) < batch {
			return
		}
	}
}

// datagram handles one UDP datagram: a v2 datagram (CR2, then frame lines)
// or classic lines ("name says: text"), several joined by '\n' when the
// relay coalesces.
func (r *receiver) datagram(li int, p []byte) {
	v2 := wire.IsV2(p)
	if v2 {
		p = p[len(wire.V2Magic):]
	}
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if len(line) == 0 {
			continue
		}
		if v2 {
			if text, ok := v2ChatText(line); ok {
				r.chat(li, text)
			} else {
				r.st.other++
			}
			continue
		}
		if i := bytes.Index(line, says); i >= 0 {
			r.chat(li, line[i+len(says):])
		} else {
			r.st.other++
		}
	}
}

// chat records one chat text received by member li.
func (r *receiver) chat(li int, text []byte) {
	st := &r.st
	s, q, t, ok := parseText(text)
	if !ok || s < 0 || s >= r.senders || q < 0 || q >= r.seqs {
		st.other++ // not a chat this step can have sent: never grows anything
		return
	}
	if t < r.stepStart {
		st.stale++
		return
	}
	if s == r.ms[li].idx {
		st.self++
		return
	}
	k := li*r.senders + s
	set := st.seen[k]
	if set[q/64]&(1<<(q%64)) != 0 {
		st.dups++
		return
	}
	set[q/64] |= 1 << (q % 64)
	if q < st.last[k] {
		st.reord++
	} else {
		st.last[k] = q
	}
	st.lat.add(r.now - t)
	atomic.AddInt64(&st.delivered, 1)
	atomic.StoreInt64(&st.lastRecv, r.now)
}

func (r *receiver) readTCP(ep, li int, buf []byte) {
	m := r.ms[li]
	for rounds := 0; rounds < 16; rounds++ {
		n0 := copy(buf, m.partial)
		n, err := unix.Read(m.fd, buf[n0:])
		if n <= 0 {
			if n == 0 && err == nil { // the server closed the connection
				r.st.closed++
				_ = unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, m.fd, nil)
			}
			return
		}
		r.st.rx++
		r.now = time.Now().UnixNano()
		r.cur = li
		used := natsScan(buf[:n0+n], r)
		m.partial = append(m.partial[:0], buf[used:n0+n]...)
		if n0+n < len(buf) {
			return // a short read: the socket is empty
		}
	}
}

func (r *receiver) natsMsg(payload []byte) { r.chat(r.cur, payload) }
func (r *receiver) natsOther()             { r.st.other++ }
func (r *receiver) natsPing() {
	m := r.ms[r.cur]
	m.wmu.Lock()
	_ = writeAll(m.fd, []byte("PONG\r\n"), time.Now().Add(time.Second))
	m.wmu.Unlock()
}
