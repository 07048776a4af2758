//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
	"golang.org/x/sys/unix"
)

// Scenario is one room and how a measured step runs in it.
type Scenario struct {
	Members    int
	Senders    int
	Duration   time.Duration // sending time per step
	Receivers  int           // receiver goroutines (each its own epoll)
	RcvBuf     int           // SO_RCVBUF(FORCE) bytes per UDP member socket
	Drain      time.Duration // longest wait for stragglers after the last send
	Budget     int           // largest datagram a receiver must take whole (coalescing relays)
	V2Rev      uint64        // the revision v2 members offer in their hello (--v2-rev; wire.Rev by default)
	RefSenders int           // sender threads of the batch and coalesce references (--ref-senders)
}

// batch is the number of messages per recvmmsg/sendmmsg call.
const batch = 64

// Result is what one relay did in one step. V2Rev is the revision the
// relay answered v2 members (2: compact datagrams); BytesPerDeliv is
// RxBytes (what the RxUnits carried) per delivery.
type Result struct {
	Scenario       string  `json:"scenario,omitempty"`
	Relay          string  `json:"relay"`
	Proto          string  `json:"proto"`
	V2Rev          uint64  `json:"v2_rev,omitempty"`
	Members        int     `json:"members"`
	Senders        int     `json:"senders"`
	OfferedRate    int     `json:"offered_chats_per_s"`
	Sent           int64   `json:"chats_sent"`
	SendErrors     int64   `json:"send_errors"`
	Expected       int64   `json:"deliveries_expected"`
	Delivered      int64   `json:"deliveries_unique"`
	Duplicates     int64   `json:"duplicates"`
	Reordered      int64   `json:"reordered"`
	Echoes         int64   `json:"echoes"`            // a sender's own chat back (v2 does that); not a delivery
	Stale          int64   `json:"stale"`             // chats sent before this step began; not a delivery
	Other          int64   `json:"other_frames"`      // notices, joins, pongs, anything not a chat
	Foreign        int64   `json:"foreign,omitempty"` // chats of another room than the receiver's: the relay is wrong
	RxUnits        int64   `json:"rx_units"`          // datagrams (UDP) or reads with data (TCP) that arrived
	RxPerDeliv     float64 `json:"rx_per_delivery"`   // RxUnits / Delivered
	RxBytes        int64   `json:"rx_bytes"`
	BytesPerDeliv  float64 `json:"rx_bytes_per_delivery"`
	Closed         int64   `json:"connections_closed,omitempty"`
	Ratio          float64 `json:"delivery_ratio"`
	DeliveriesPerS float64 `json:"deliveries_per_s"`
	Window         float64 `json:"window_s"`      // first send to last delivery
	SendWindow     float64 `json:"send_window_s"` // first send to last send
	P50us          float64 `json:"p50_us"`
	P99us          float64 `json:"p99_us"`
	P999us         float64 `json:"p999_us"`
	MaxUs          float64 `json:"max_us"`
	RelayCPUs      float64 `json:"relay_cpu_s"` // -1: unknown; the sum of the relays' when the room is on several
	CPUusPerDeliv  float64 `json:"relay_cpu_us_per_delivery"`
	BrokerCPUs     float64 `json:"broker_cpu_s,omitempty"` // the NATS server the relays share (nodes2), a process of its own; -1: unknown
	BrokerUsPerDel float64 `json:"broker_cpu_us_per_delivery,omitempty"`
	// ByNode counts deliveries by the relay the sender was on and the one
	// the receiver was on, [from][to], when the room is on several
	// (layout.nodes > 1).
	ByNode        [][]int64 `json:"deliveries_by_node,omitempty"`
	ToolCPUcores  float64   `json:"tool_cpu_cores"`
	RecvThreadMax float64   `json:"receiver_thread_cpu_max"` // busiest receiver thread, in cores
	ToolSaturated bool      `json:"tool_saturated"`
	ToolLimited   bool      `json:"tool_limited"` // UDP senders could not keep the schedule
	// SockDrops counts the datagrams the kernel dropped in the load tool's
	// own member sockets during the step, their receive buffers full
	// (/proc/net/udp; IPv4 UDP members; -1: unknown). They were sent by the
	// relay and never read: missing from Delivered like any other loss, and
	// shown apart so that a step lost there is told from one lost in the relay.
	SockDrops  int64   `json:"member_socket_drops"`
	KeptUp     bool    `json:"kept_up"`   // the last delivery came soon after the schedule's end
	Sustained  bool    `json:"sustained"` // ratio >= 0.999 and kept up
	VsNaive    float64 `json:"deliveries_vs_naive,omitempty"`
	VsBatch    float64 `json:"deliveries_vs_batch,omitempty"`
	VsCoalesce float64 `json:"deliveries_vs_coalesce,omitempty"`
	VsNATS     float64 `json:"deliveries_vs_nats,omitempty"`

	lat *hist // the delivery times the quantiles come from (poolTurns)
}

// derive sets what res's counts, windows, CPU seconds and delivery times
// (res.lat) give: deliveries/s over the window, the delivery ratio, rx
// units and bytes per delivery, the latency quantiles and CPU µs per
// delivery (where the CPU seconds are known).
func (res *Result) derive() {
	lat := res.lat
	if res.Window > 0 {
		res.DeliveriesPerS = float64(res.Delivered) / res.Window
	}
	if res.Expected > 0 {
		res.Ratio = float64(res.Delivered) / float64(res.Expected)
	}
	if res.Delivered > 0 {
		res.RxPerDeliv = float64(res.RxUnits) / float64(res.Delivered)
		res.BytesPerDeliv = float64(res.RxBytes) / float64(res.Delivered)
	}
	res.P50us = float64(lat.quantile(0.50)) / 1e3
	res.P99us = float64(lat.quantile(0.99)) / 1e3
	res.P999us = float64(lat.quantile(0.999)) / 1e3
	res.MaxUs = float64(lat.quantile(1)) / 1e3
	if res.Delivered > 0 && res.RelayCPUs >= 0 {
		res.CPUusPerDeliv = res.RelayCPUs * 1e6 / float64(res.Delivered)
	}
	if res.Delivered > 0 && res.BrokerCPUs > 0 {
		res.BrokerUsPerDel = res.BrokerCPUs * 1e6 / float64(res.Delivered)
	}
}

// poolTurns is one row for turns, one relay's steps at one rate taken in
// turns with other relays': their counts, windows and CPU seconds added
// up, their delivery times merged, so that its quantiles are those of
// every delivery of every turn. It kept up if every turn did, and the
// tool was saturated or limited if it was in any turn. A CPU figure or a
// drop count unknown in one turn is unknown (-1). Deliveries by node are
// not pooled: no step in turns spans several relays.
func poolTurns(turns []Result) Result {
	t := turns[0]
	p := Result{Scenario: t.Scenario, Relay: t.Relay, Proto: t.Proto, V2Rev: t.V2Rev, Members: t.Members,
		Senders: t.Senders, OfferedRate: t.OfferedRate, KeptUp: true, lat: new(hist)}
	for _, r := range turns {
		p.Sent += r.Sent
		p.SendErrors += r.SendErrors
		p.Expected += r.Expected
		p.Delivered += r.Delivered
		p.Duplicates += r.Duplicates
		p.Reordered += r.Reordered
		p.Echoes += r.Echoes
		p.Stale += r.Stale
		p.Other += r.Other
		p.Foreign += r.Foreign
		p.RxUnits += r.RxUnits
		p.RxBytes += r.RxBytes
		p.Closed += r.Closed
		p.Window += r.Window
		p.SendWindow += r.SendWindow
		addKnown(&p.RelayCPUs, r.RelayCPUs)
		addKnown(&p.BrokerCPUs, r.BrokerCPUs)
		addKnown(&p.SockDrops, r.SockDrops)
		p.ToolCPUcores += r.ToolCPUcores * r.Window // weighted by the turn's length
		p.RecvThreadMax = max(p.RecvThreadMax, r.RecvThreadMax)
		p.ToolSaturated = p.ToolSaturated || r.ToolSaturated
		p.ToolLimited = p.ToolLimited || r.ToolLimited
		p.KeptUp = p.KeptUp && r.KeptUp
		if r.lat != nil {
			p.lat.merge(r.lat)
		}
	}
	if p.Window > 0 {
		p.ToolCPUcores /= p.Window
	}
	p.derive()
	p.Sustained = p.sustained()
	return p
}

// addKnown adds v to *sum, where -1 means unknown: unknown in either is
// unknown in the sum.
func addKnown[T int64 | float64](sum *T, v T) {
	if *sum < 0 || v < 0 {
		*sum = -1
	} else {
		*sum += v
	}
}

// sustained is the step's verdict: at least 99.9% delivered, kept up,
// and no chat in a room it was not sent to.
func (res *Result) sustained() bool { return res.Ratio >= 0.999 && res.KeptUp && res.Foreign == 0 }

// session is the logged-in members of one relay (or of several sharing
// the room: lay.nodes), in one room or several (lay); it runs steps.
type session struct {
	proto   Proto
	sc      Scenario
	lay     layout
	members []*member
	rev     uint64           // v2: the lowest revision the relay's welcomes answered
	addrs   []netip.AddrPort // the relays the members log in on

	// brokerCPU reads the CPU seconds of the NATS server the relays
	// share (nil: there is none); a step reports its share beside the
	// relays'.
	brokerCPU func() (float64, error)
}

// layout says which room each member of a session is in and which members
// send. Room k holds members k*size .. k*size+size-1, and its first perRoom
// members send; sender g (the s of a chat text) is member
// (g/perRoom)*size + g%perRoom. One room of Members with Senders senders is
// the room scenarios' layout: sender g is member g.
//
// When several relays share the room (nodes > 1), member i is logged in
// on relay i % nodes: the members, and the senders with them, are dealt
// out in turn.
type layout struct {
	rooms, size, perRoom int
	nodes                int // relays the members are spread over; 0 or 1: one
}

// oneRoom is the layout of a single room of sc.Members with sc.Senders senders.
func oneRoom(sc Scenario) layout { return layout{rooms: 1, size: sc.Members, perRoom: sc.Senders} }

func (l layout) members() int { return l.rooms * l.size }
func (l layout) senders() int { return l.rooms * l.perRoom }

// sender returns the member index of sender g.
func (l layout) sender(g int) int { return g/l.perRoom*l.size + g%l.perRoom }

// roomOf returns the room of member i.
func (l layout) roomOf(i int) int { return i / l.size }

// nodeOf returns the relay member i is logged in on (0 with one relay).
func (l layout) nodeOf(i int) int {
	if l.nodes < 2 {
		return 0
	}
	return i % l.nodes
}

// roomName is the name of room k: main when there is one room, else r0000 …
func (l layout) roomName(k int) string {
	if l.rooms == 1 {
		return wire.RoomMain
	}
	return fmt.Sprintf("r%04d", k)
}

// dial opens sc.Members members, each its own socket, and logs them in one
// after another (classic L/OK, the v2 handshake, or a NATS subscription).
func dial(proto Proto, addr netip.AddrPort, sc Scenario) (*session, error) {
	return dialNodes(proto, []netip.AddrPort{addr}, sc)
}

// dialNodes is dial for a room that relays at addrs share: member i logs
// in on addrs[i % len(addrs)] (see layout).
func dialNodes(proto Proto, addrs []netip.AddrPort, sc Scenario) (*session, error) {
	if sc.Members < 2 || sc.Senders < 1 || sc.Senders > sc.Members || sc.Senders > 99 {
		return nil, errors.New("need members >= 2, 1 <= senders <= min(members, 99)")
	}
	if len(addrs) < 1 || (len(addrs) > 1 && proto == ProtoNATS) {
		return nil, errors.New("need one address, or several for chatrelay")
	}
	if err := raiseFDLimit(uint64(sc.Members) + 256); err != nil {
		return nil, err
	}
	s := &session{proto: proto, sc: sc, lay: oneRoom(sc), addrs: addrs}
	s.lay.nodes = len(addrs)
	buf := make([]byte, 65536)
	for i := 0; i < sc.Members; i++ {
		name := fmt.Sprintf("m%04d", i)
		addr := addrs[s.lay.nodeOf(i)]
		var m *member
		var err error
		if proto == ProtoNATS {
			m, err = openNATSMember(name, i, addr)
		} else if m, err = openUDPMember(name, i, sc.RcvBuf, addr); err == nil {
			if proto == ProtoV2 {
				err = m.loginV2(sc.V2Rev)
				if err == nil && (i == 0 || m.rev < s.rev) {
					s.rev = m.rev
				}
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
//
// It runs in four parts: startReceivers, sendChats, stepReceivers.drain,
// then tally once the receivers have stopped. The CPU readings bracket the
// sending and the drain, the second set taken in the reverse order of the
// first.
func (s *session) step(rate int, cpu func() (float64, error)) (Result, error) {
	sc := s.sc
	res := Result{Proto: s.proto.String(), V2Rev: s.rev, Members: sc.Members, Senders: sc.Senders, OfferedRate: rate, RelayCPUs: -1}
	if rate < 1 {
		return res, errors.New("rate must be at least 1")
	}
	perSender := int64(float64(rate) / float64(s.lay.senders()) * sc.Duration.Seconds())
	if perSender < 1 {
		return res, fmt.Errorf("%d chats/s for %v gives each of %d senders no chat to send", rate, sc.Duration, s.lay.senders())
	}
	stepStart := time.Now().UnixNano()

	rv, err := s.startReceivers(perSender, stepStart)
	if err != nil {
		return res, err
	}

	drops0 := s.memberDrops() // read before the tool's own CPU is, so as not to count as its work
	var before, after cpuMark
	before.self, _ = selfCPU()
	before.threads = rv.threadCPU()
	before.broker = relayCPU(s.brokerCPU)
	before.relay = relayCPU(cpu)
	start := time.Now()

	sent, sendErr := s.sendChats(rate, perSender, start)
	sendEnd := time.Now()
	res.Sent, res.SendErrors = sent, sendErr
	res.Expected = res.Sent * int64(s.lay.size-1) // a chat reaches the others in its room

	rv.drain(res.Expected, sendEnd, sc.Drain)
	after.relay = relayCPU(cpu)
	after.broker = relayCPU(s.brokerCPU)
	after.threads = rv.threadCPU()
	after.self, _ = selfCPU()
	rv.halt()

	s.tally(&res, rv.rs, start, sendEnd, before, after)
	res.SockDrops = -1
	if drops1 := s.memberDrops(); drops0 >= 0 && drops1 >= 0 {
		res.SockDrops = drops1 - drops0
	}
	return res, nil
}

// memberDrops sums the drops of the members' sockets, those connected to
// the session's relays (udpDrops); -1 when they cannot be read: NATS
// members (TCP), a relay on IPv6, no /proc.
func (s *session) memberDrops() int64 {
	if s.proto == ProtoNATS || len(s.addrs) == 0 {
		return -1
	}
	for _, a := range s.addrs {
		if !a.Addr().Is4() {
			return -1
		}
	}
	d, _, err := udpDrops(s.addrs...)
	if err != nil {
		return -1
	}
	return d
}

// stepReceivers are the receiver goroutines of one step and the flag that
// stops them.
type stepReceivers struct {
	rs   []*receiver
	stop atomic.Bool
	wg   sync.WaitGroup
}

// startReceivers deals the members out, round robin, to
// min(max(sc.Receivers, 1), members) receivers and starts them. Each
// receiver counts seqs 0..perSender-1 from each sender as this step's, and
// a chat sent before stepStart as stale. When it returns without error,
// every receiver has all its members' sockets in its epoll and is reading
// them, and its thread id is set. On an error, every receiver has stopped
// again.
func (s *session) startReceivers(perSender, stepStart int64) (*stepReceivers, error) {
	sc := s.sc
	nrecv := min(max(sc.Receivers, 1), len(s.members))
	rv := &stepReceivers{rs: make([]*receiver, nrecv)}
	ready := make(chan error, nrecv)
	for r := 0; r < nrecv; r++ {
		rc := &receiver{proto: s.proto, lay: s.lay, seqs: perSender, stepStart: stepStart}
		if s.lay.nodes > 1 {
			rc.st.byNode = make([]int64, s.lay.nodes*s.lay.nodes)
		}
		for i := r; i < len(s.members); i += nrecv {
			rc.ms = append(rc.ms, s.members[i])
		}
		rc.st.last = make([]int64, len(rc.ms)*s.lay.perRoom)
		rc.st.seen = make([][]uint64, len(rc.ms)*s.lay.perRoom)
		for i := range rc.st.last {
			rc.st.last[i] = -1
			rc.st.seen[i] = make([]uint64, perSender/64+1) // fixed: a seq beyond perSender is not ours
		}
		rv.rs[r] = rc
		rv.wg.Add(1)
		go func() {
			defer rv.wg.Done()
			rc.run(&rv.stop, max(sc.Budget, 2048), ready)
		}()
	}
	for r := 0; r < nrecv; r++ {
		if err := <-ready; err != nil {
			rv.halt()
			return nil, err
		}
	}
	return rv, nil
}

// halt stops the receivers and returns once every one has returned: their
// counts are then final, and safe to read without atomics.
func (rv *stepReceivers) halt() {
	rv.stop.Store(true)
	rv.wg.Wait()
}

// threadCPU reads the CPU seconds of each receiver's thread so far, in the
// order of rv.rs; one tidCPU cannot read counts as 0.
func (rv *stepReceivers) threadCPU() []float64 {
	out := make([]float64, len(rv.rs))
	for i, rc := range rv.rs {
		out[i], _ = tidCPU(rc.tid)
	}
	return out
}

// drain waits for stragglers after the last send, which ended at sendEnd:
// it returns once the receivers have delivered expected chats, or none has
// been delivered for 300 ms (counting from sendEnd while none has), or
// limit has passed since sendEnd, looking every 20 ms. The receivers keep
// running.
func (rv *stepReceivers) drain(expected int64, sendEnd time.Time, limit time.Duration) {
	deadline := sendEnd.Add(limit)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		var got, lastRecv int64
		for _, rc := range rv.rs {
			got += atomic.LoadInt64(&rc.st.delivered)
			lastRecv = max(lastRecv, atomic.LoadInt64(&rc.st.lastRecv))
		}
		if got >= expected {
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
}

// sendChats runs the layout's senders, each sending perSender chats into
// its room on a schedule that offers rate chats/s in all, the senders
// staggered across one interval from start. It returns once every sender
// is done, with the number of chats sent and of send errors.
func (s *session) sendChats(rate int, perSender int64, start time.Time) (int64, int64) {
	var sent, sendErr atomic.Int64
	var swg sync.WaitGroup
	n := s.lay.senders()
	interval := max(time.Duration(float64(time.Second)*float64(n)/float64(rate)), 1)
	for si := 0; si < n; si++ {
		swg.Add(1)
		go func(si int) {
			defer swg.Done()
			// Stagger senders across one interval.
			begin := start.Add(interval * time.Duration(si) / time.Duration(n))
			m := s.members[s.lay.sender(si)]
			if s.proto == ProtoNATS {
				sendTCP(m, si, perSender, begin, interval, &sent, &sendErr)
			} else {
				room := s.lay.roomName(s.lay.roomOf(m.idx))
				sendUDP(m, s.proto, room, si, perSender, begin, interval, &sent, &sendErr)
			}
		}(si)
	}
	swg.Wait()
	return sent.Load(), sendErr.Load()
}

// cpuMark is the CPU time used so far, in seconds, read at one end of a
// step's measurement: by the relay (-1: unknown), by the NATS server the
// relays share (-1: none or unknown), by this process, and by each
// receiver's thread.
type cpuMark struct {
	relay   float64
	broker  float64
	self    float64
	threads []float64
}

// relayCPU reads the relay's CPU seconds with cpu: -1 when cpu is nil or
// fails.
func relayCPU(cpu func() (float64, error)) float64 {
	if cpu != nil {
		if v, err := cpu(); err == nil {
			return v
		}
	}
	return -1
}

// tally completes res, whose Sent and Expected are set, from the stopped
// receivers rs (see halt), the step's first send (start) and the end of its
// sending (sendEnd), and the CPU marks before and after. It adds up the
// receivers' counts and latencies, then derives the window, the rates and
// ratios, the latency quantiles, the CPU figures (relay CPU only when both
// marks know it) and the verdicts: ToolSaturated, ToolLimited, KeptUp,
// Sustained. The measured time for the tool's CPU runs from start to now.
func (s *session) tally(res *Result, rs []*receiver, start, sendEnd time.Time, before, after cpuMark) {
	sc := s.sc
	var lastRecv int64
	var lat hist
	for _, rc := range rs {
		st := &rc.st
		res.Delivered += st.delivered
		res.Duplicates += st.dups
		res.Reordered += st.reord
		res.Other += st.other
		res.Foreign += st.foreign
		res.Echoes += st.self
		res.Stale += st.stale
		res.RxUnits += st.rx
		res.RxBytes += st.rxBytes
		res.Closed += st.closed
		lat.merge(&st.lat)
		lastRecv = max(lastRecv, st.lastRecv)
		if n := s.lay.nodes; n > 1 && len(st.byNode) == n*n {
			if res.ByNode == nil {
				res.ByNode = make([][]int64, n)
				for i := range res.ByNode {
					res.ByNode[i] = make([]int64, n)
				}
			}
			for k, v := range st.byNode {
				res.ByNode[k/n][k%n] += v
			}
		}
	}
	end := sendEnd
	if t := time.Unix(0, lastRecv); t.After(end) {
		end = t
	}
	res.Window = end.Sub(start).Seconds()
	res.SendWindow = sendEnd.Sub(start).Seconds()
	measured := time.Since(start).Seconds()
	if before.relay >= 0 && after.relay >= 0 {
		res.RelayCPUs = after.relay - before.relay
	}
	if s.brokerCPU != nil {
		res.BrokerCPUs = -1
		if before.broker >= 0 && after.broker >= 0 {
			res.BrokerCPUs = after.broker - before.broker
		}
	}
	res.lat = &lat
	res.derive()
	if measured > 0 {
		res.ToolCPUcores = (after.self - before.self) / measured
		for i := range after.threads {
			res.RecvThreadMax = max(res.RecvThreadMax, (after.threads[i]-before.threads[i])/measured)
		}
	}
	res.ToolSaturated = res.RecvThreadMax > 0.9 || res.ToolCPUcores > 0.9*float64(runtime.NumCPU())
	// The schedule ends at Duration; late by more than 10% (+50 ms for
	// timer slack) means the senders could not keep it. Over UDP that is the
	// tool's limit; over TCP it is the broker's backpressure.
	late := res.SendWindow > sc.Duration.Seconds()*1.1+0.05
	res.ToolLimited = late && s.proto != ProtoNATS
	res.KeptUp = !late && res.Window <= sc.Duration.Seconds()*1.1+0.25
	res.Sustained = res.sustained()
}
