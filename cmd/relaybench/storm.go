//go:build linux

package main

// The joinstorm scenario: many classic members log in at once, as new users
// of a classic client would, and then one of them chats. Member i sends its
// first "L name" at i/rate seconds and sends it again every second until
// the first "OK" arrives; the storm ends when every member has its OK or at
// the deadline. Then one member (member 0 if it has its OK) sends
// "C name storm-check-NONCE", and the tool records which of the others
// receive that line within the chat deadline.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	stormScenario = "joinstorm"
	// stormRetry is how often a classic client re-sends its login until
	// it gets OK (what the clients did).
	stormRetry = time.Second
	// relayDefaultMaxMembers is cmd/relay's --max-members default; a
	// larger storm passes --max-members.
	relayDefaultMaxMembers = 10000
	// stormDgram is the receive buffer per datagram: a classic line is at
	// most 2,048 bytes (relay.MaxClassicReply).
	stormDgram = 4096
)

// joinSuffix ends the relay's classic join notice (lang en).
var joinSuffix = []byte(" joined the chat room")

// stormConfig is what --storm-* set.
type stormConfig struct {
	Members      int
	Rate         int // first logins per second
	Deadline     time.Duration
	ChatDeadline time.Duration
	Retry        time.Duration // 0: stormRetry
	Receivers    int
	RcvBuf       int
}

func defineStormFlags(fs *flag.FlagSet, s *stormConfig) {
	fs.IntVar(&s.Members, "storm-members", 10000, "joinstorm: classic members that log in, each its own socket")
	fs.IntVar(&s.Rate, "storm-rate", 1000, "joinstorm: first logins per second (member i sends its first L at i/rate s, then every 1 s until OK)")
	fs.DurationVar(&s.Deadline, "storm-deadline", 30*time.Second, "joinstorm: every member must have its OK this long after the first L")
	fs.DurationVar(&s.ChatDeadline, "storm-chat-deadline", 2*time.Second, "joinstorm: the chat sent after the storm must reach every other member within this")
}

// ladderOnlyFlags are the flags that mean nothing to joinstorm.
var ladderOnlyFlags = []string{"relays", "proto", "members", "senders", "rate", "rates", "duration", "budget", "drain", "stop-after", "time-limit", "plot"}

// scenarioFlags runs after the flags are parsed, for a scenario with flags
// of its own (--PREFIX*): one of them without --scenario selects it, no
// other scenario takes them, and it refuses the flags in refused (why says
// what it runs instead) rather than ignoring them. It reports whether the
// scenario is the one selected.
func scenarioFlags(fs *flag.FlagSet, c *config, prefix, scenario string, refused []string, why string) (bool, error) {
	var own, bad []string
	fs.Visit(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, prefix) {
			own = append(own, "--"+f.Name)
		} else if slices.Contains(refused, f.Name) {
			bad = append(bad, "--"+f.Name)
		}
	})
	if len(own) > 0 && c.scenario == "" {
		c.scenario = scenario
	}
	if c.scenario != scenario {
		if len(own) > 0 {
			return false, fmt.Errorf("%s: only with --scenario %s", strings.Join(own, ", "), scenario)
		}
		return false, nil
	}
	if len(bad) > 0 {
		return true, fmt.Errorf("%s: not with --scenario %s (%s)", strings.Join(bad, ", "), scenario, why)
	}
	return true, nil
}

// checkStormFlags runs after the flags are parsed: a --storm-* flag without
// --scenario selects joinstorm, and joinstorm refuses the ladder's flags
// rather than ignoring them.
func checkStormFlags(fs *flag.FlagSet, c *config) error {
	if ok, err := scenarioFlags(fs, c, "storm-", stormScenario, ladderOnlyFlags, "it runs chatrelay with classic members; see --storm-*"); !ok || err != nil {
		return err
	}
	s := &c.storm
	switch {
	case s.Members < 2 || s.Members > 20000:
		return errors.New("--storm-members: 2 to 20000")
	case s.Rate < 1 || s.Rate > 100000:
		return errors.New("--storm-rate: 1 to 100000")
	case s.Deadline <= 0 || s.Deadline > 10*time.Minute:
		return errors.New("--storm-deadline: positive, at most 10m")
	case s.ChatDeadline <= 0 || s.ChatDeadline > time.Minute:
		return errors.New("--storm-chat-deadline: positive, at most 1m")
	}
	return nil
}

// StormReport is what a joinstorm run measured (Report.Storm). Times are
// seconds from the first member's first L unless said otherwise.
type StormReport struct {
	Relay         string   `json:"relay"`
	RelayFlags    []string `json:"relay_extra_flags,omitempty"` // beyond the tool's usual chatrelay flags
	Members       int      `json:"members"`
	Rate          int      `json:"logins_per_s"`
	RetryS        float64  `json:"retry_every_s"`
	DeadlineS     float64  `json:"deadline_s"`
	ChatDeadlineS float64  `json:"chat_deadline_s"`
	RcvBuf        int      `json:"rcvbuf_bytes"`

	Started       int     `json:"members_started"`          // sent at least one L before the storm ended
	OKs           int     `json:"members_ok"`               // got OK within the deadline
	AllOKAfterS   float64 `json:"all_ok_after_s,omitempty"` // the last OK (0: not every member had one)
	StormS        float64 `json:"storm_s"`                  // until every OK or the deadline
	LoginP50S     float64 `json:"login_p50_s"`              // a member's first L to its OK, over the members with OK
	LoginP99S     float64 `json:"login_p99_s"`
	LoginMaxS     float64 `json:"login_max_s"`
	LSent         int64   `json:"logins_sent"` // L datagrams, first tries and retries
	Retries       int64   `json:"retries"`     // LSent - Started
	SendErrors    int64   `json:"send_errors"`
	ScheduleLagMs float64 `json:"schedule_lag_max_ms"` // latest L behind its schedule

	RxMin     int64  `json:"rx_per_member_min"` // datagrams a member received during the storm
	RxMedian  int64  `json:"rx_per_member_median"`
	RxMax     int64  `json:"rx_per_member_max"`
	RxTotal   int64  `json:"rx_storm_total"`
	Early     int64  `json:"early"`             // join notices that came before the member's own OK
	Refusals  int64  `json:"refusals"`          // other datagrams before OK (full, name taken, ...)
	Refusal   string `json:"refusal,omitempty"` // the first of them
	RepeatOKs int64  `json:"repeat_oks"`        // OKs after the first (answers to retries that crossed it)

	ChatFrom     string  `json:"chat_from,omitempty"`
	ChatExpected int     `json:"chat_expected"`          // the other members
	ChatReached  int     `json:"chat_reached"`           // within the chat deadline
	ChatLastS    float64 `json:"chat_last_s,omitempty"`  // send to the last arrival within the deadline
	ChatFirstS   float64 `json:"chat_first_s,omitempty"` // send to the first arrival

	RelayCPUs    float64 `json:"relay_cpu_s"` // storm and chat; -1: unknown
	ToolCPUcores float64 `json:"tool_cpu_cores"`
	MemberDrops  int64   `json:"member_socket_drops"` // datagrams to members the kernel dropped at a full socket buffer; -1: unknown
	RelayDrops   int64   `json:"relay_socket_drops"`  // datagrams to the relay (logins, the chat) dropped so; -1: unknown

	PassOK   bool     `json:"pass_all_ok"`
	PassChat bool     `json:"pass_chat"`
	Notes    []string `json:"notes,omitempty"`
}

// runStorm starts chatrelay as the other scenarios do and runs the storm.
func (e *env) runStorm(sc stormConfig) *StormReport {
	sc.Receivers, sc.RcvBuf = e.c.sc.Receivers, e.c.sc.RcvBuf
	var extra []string
	if sc.Members > relayDefaultMaxMembers {
		extra = []string{"--max-members", strconv.Itoa(sc.Members)}
	}
	e.moreArgs = extra
	defer func() { e.moreArgs = nil }()
	fail := func(err error) *StormReport {
		msg := fmt.Sprintf("%s: %s: FAILED: %v", stormScenario, relayClassic, err)
		fmt.Fprintln(e.stderr, "relaybench:", msg)
		e.failures = append(e.failures, msg)
		return &StormReport{Relay: relayClassic, RelayFlags: extra, Members: sc.Members, Rate: sc.Rate, RelayCPUs: -1, MemberDrops: -1, RelayDrops: -1, Notes: []string{msg}}
	}
	pr, addr, _, err := e.startRelay(relayClassic, e.c.sc.Budget)
	if err != nil {
		return fail(err)
	}
	defer pr.stop()
	rep, err := stormRun(addr, sc, pr.cpu, pr.exited, e.stderr)
	if err == nil && pr.exited() {
		err = fmt.Errorf("the relay exited (%v)", pr.err)
	}
	if err != nil {
		if rep == nil {
			return fail(err)
		}
		msg := fmt.Sprintf("%s: %s: FAILED: %v", stormScenario, relayClassic, err)
		e.failures = append(e.failures, msg)
		rep.Notes = append(rep.Notes, msg)
	}
	rep.Relay, rep.RelayFlags = relayClassic, extra
	if len(extra) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d members exceed the relay's --max-members default of %d: started it with %s", sc.Members, relayDefaultMaxMembers, strings.Join(extra, " ")))
	}
	return rep
}

// storm is one run's members and what they saw. Each member's slot is
// written by the one receiver that owns its socket; okAt is also read by
// the sender and the main loop.
type storm struct {
	cfg      stormConfig
	ms       []*member
	okAt     []atomic.Int64 // unix ns of the member's first OK; 0: none yet
	firstL   []int64        // unix ns of its first L; the sender's until it returns
	rx       []int64        // datagrams received before the chat was sent
	chatAt   []int64        // unix ns the check chat arrived; 0: not (yet)
	chatTail []byte         // " says: storm-check-NONCE": how the check chat's line ends
	inChat   atomic.Bool    // the chat was sent: datagrams no longer count in rx
	chatFrom atomic.Int64   // the chat's sender, -1 before
}

// stormRecv is one receiver's share of the members, by global index.
type stormRecv struct {
	idx      []int
	oks      atomic.Int64 // members of this share with OK
	chats    atomic.Int64 // members of this share (not the sender) with the chat
	early    int64
	refusals int64
	refusal  string
	repeatOK int64
	rxTotal  int64
}

// stormRun runs the storm against a relay at addr. cpu and exited may be
// nil. Progress goes to progress once a second. The report is returned
// with an error when the run could not finish (a socket failed, the relay
// exited); it is nil only when nothing was measured.
func stormRun(addr netip.AddrPort, sc stormConfig, cpu func() (float64, error), exited func() bool, progress io.Writer) (*StormReport, error) {
	if sc.Retry <= 0 {
		sc.Retry = stormRetry
	}
	sc.Receivers = min(max(sc.Receivers, 1), sc.Members)
	rep := &StormReport{Members: sc.Members, Rate: sc.Rate, RetryS: sc.Retry.Seconds(), DeadlineS: sc.Deadline.Seconds(),
		ChatDeadlineS: sc.ChatDeadline.Seconds(), RcvBuf: sc.RcvBuf, RelayCPUs: -1, MemberDrops: -1, RelayDrops: -1}
	if err := raiseFDLimit(uint64(sc.Members) + 256); err != nil {
		return nil, err
	}
	s := &storm{cfg: sc, okAt: make([]atomic.Int64, sc.Members), firstL: make([]int64, sc.Members),
		rx: make([]int64, sc.Members), chatAt: make([]int64, sc.Members)}
	s.chatFrom.Store(-1)
	text := fmt.Sprintf("storm-check-%d", time.Now().UnixNano())
	s.chatTail = []byte(" says: " + text)
	defer func() {
		for _, m := range s.ms {
			m.close()
		}
	}()
	for i := 0; i < sc.Members; i++ {
		m, err := openUDPMember(fmt.Sprintf("m%05d", i), i, sc.RcvBuf, addr)
		if err != nil {
			return nil, fmt.Errorf("member %d: %w", i, err)
		}
		s.ms = append(s.ms, m)
	}

	rs := make([]*stormRecv, sc.Receivers)
	var stop atomic.Bool
	var rwg sync.WaitGroup
	ready := make(chan error, sc.Receivers)
	for r := range rs {
		rc := &stormRecv{}
		for i := r; i < sc.Members; i += sc.Receivers {
			rc.idx = append(rc.idx, i)
		}
		rs[r] = rc
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			s.receive(rc, &stop, ready)
		}()
	}
	stopReceivers := func() {
		stop.Store(true)
		rwg.Wait()
	}
	for range rs {
		if err := <-ready; err != nil {
			stopReceivers()
			return nil, err
		}
	}
	defer stopReceivers() // before the sockets close: deferred calls run last-in first-out

	_, relayDrops0, dropsErr := udpDrops(addr) // the member sockets are new
	relay0 := -1.0
	if cpu != nil {
		if v, err := cpu(); err == nil {
			relay0 = v
		}
	}
	self0, _ := selfCPU()
	start := time.Now().Add(20 * time.Millisecond) // member 0's first L
	deadline := start.Add(sc.Deadline)

	var stopSend atomic.Bool
	var lSent, sendErr atomic.Int64
	var lagMax time.Duration
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		lagMax = s.sendLogins(start, deadline, &stopSend, &lSent, &sendErr)
	}()
	oks := func() int64 {
		var n int64
		for _, rc := range rs {
			n += rc.oks.Load()
		}
		return n
	}
	var runErr error
	nextReport := start.Add(time.Second)
	for {
		now := time.Now()
		n := oks()
		if n == int64(sc.Members) || !now.Before(deadline) {
			break
		}
		if exited != nil && exited() {
			runErr = errors.New("the relay exited during the storm")
			break
		}
		if progress != nil && !now.Before(nextReport) {
			fmt.Fprintf(progress, "relaybench: %s: %.0f s: %d of %d members have OK, %d L sent\n", stormScenario, now.Sub(start).Seconds(), n, sc.Members, lSent.Load())
			nextReport = nextReport.Add(time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopSend.Store(true)
	<-sendDone
	stormEnd := time.Now()
	s.inChat.Store(true) // rx counts the storm only from here on
	rep.StormS = stormEnd.Sub(start).Seconds()
	rep.LSent, rep.SendErrors, rep.ScheduleLagMs = lSent.Load(), sendErr.Load(), float64(lagMax)/float64(time.Millisecond)
	if progress != nil {
		fmt.Fprintf(progress, "relaybench: %s: storm over after %.1f s: %d of %d members have OK, %d L sent\n", stormScenario, rep.StormS, oks(), sc.Members, rep.LSent)
	}

	// The chat: from member 0, or the first member with OK.
	from := -1
	for i := range s.ms {
		if s.okAt[i].Load() != 0 {
			from = i
			break
		}
	}
	var chatSent time.Time
	if from < 0 {
		rep.Notes = append(rep.Notes, "no member has OK: no chat sent")
	} else if runErr == nil {
		rep.ChatFrom = s.ms[from].name
		s.chatFrom.Store(int64(from))
		chatSent = time.Now()
		if _, err := unix.Write(s.ms[from].fd, []byte("C "+s.ms[from].name+" "+text)); err != nil {
			runErr = fmt.Errorf("sending the chat: %w", err)
		}
		chats := func() int64 {
			var n int64
			for _, rc := range rs {
				n += rc.chats.Load()
			}
			return n
		}
		for runErr == nil && chats() < int64(sc.Members-1) && time.Since(chatSent) < sc.ChatDeadline {
			time.Sleep(5 * time.Millisecond)
		}
	}
	relay1 := -1.0
	if cpu != nil {
		if v, err := cpu(); err == nil {
			relay1 = v
		}
	}
	self1, _ := selfCPU()
	memberDrops, relayDrops1, dropsErr1 := udpDrops(addr)
	took := time.Since(start).Seconds()
	stopReceivers()

	// Everything below reads what the receivers and the sender owned.
	if relay0 >= 0 && relay1 >= 0 {
		rep.RelayCPUs = relay1 - relay0
	}
	if took > 0 {
		rep.ToolCPUcores = (self1 - self0) / took
	}
	if dropsErr == nil && dropsErr1 == nil {
		rep.MemberDrops, rep.RelayDrops = memberDrops, relayDrops1-relayDrops0
	}
	var logins []int64
	var lastOK int64
	for i := range s.ms {
		if s.firstL[i] != 0 {
			rep.Started++
		}
		ok := s.okAt[i].Load()
		if ok == 0 || ok > deadline.UnixNano() {
			continue
		}
		rep.OKs++
		lastOK = max(lastOK, ok)
		logins = append(logins, ok-s.firstL[i])
	}
	rep.Retries = rep.LSent - int64(rep.Started)
	if rep.OKs == sc.Members {
		rep.AllOKAfterS = float64(lastOK-start.UnixNano()) / 1e9
	}
	if len(logins) > 0 {
		slices.Sort(logins)
		q := func(p float64) float64 { return float64(logins[int(p*float64(len(logins)-1))]) / 1e9 }
		rep.LoginP50S, rep.LoginP99S, rep.LoginMaxS = q(0.5), q(0.99), q(1)
	}
	rx := slices.Clone(s.rx)
	slices.Sort(rx)
	rep.RxMin, rep.RxMedian, rep.RxMax = rx[0], rx[len(rx)/2], rx[len(rx)-1]
	for _, rc := range rs {
		rep.RxTotal += rc.rxTotal
		rep.Early += rc.early
		rep.Refusals += rc.refusals
		rep.RepeatOKs += rc.repeatOK
		if rep.Refusal == "" {
			rep.Refusal = rc.refusal
		}
	}
	rep.ChatExpected = sc.Members - 1
	if from >= 0 && !chatSent.IsZero() {
		end := chatSent.Add(sc.ChatDeadline).UnixNano()
		first, last := int64(0), int64(0)
		for i, at := range s.chatAt {
			if i == from || at == 0 || at > end {
				continue
			}
			rep.ChatReached++
			last = max(last, at)
			if first == 0 || at < first {
				first = at
			}
		}
		if rep.ChatReached > 0 {
			rep.ChatFirstS = float64(first-chatSent.UnixNano()) / 1e9
			rep.ChatLastS = float64(last-chatSent.UnixNano()) / 1e9
		}
		if s.chatAt[from] != 0 {
			rep.Notes = append(rep.Notes, "the chat's sender received its own chat back (a classic relay does not echo)")
		}
	}
	if rep.Started < sc.Members {
		rep.Notes = append(rep.Notes, fmt.Sprintf("only %d of %d members sent an L before the deadline: --storm-rate %d is too low for --storm-deadline %v", rep.Started, sc.Members, sc.Rate, sc.Deadline))
	}
	if rep.Early > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d join notices reached members before their own OK: a classic client takes the first datagram after its L as the answer", rep.Early))
	}
	rep.PassOK = rep.OKs == sc.Members
	rep.PassChat = rep.ChatReached == rep.ChatExpected
	return rep, runErr
}

// sendLogins sends every member's first L on the schedule start + i/rate
// and again every Retry after the last one was due, until the member has
// its OK, stop is set or the deadline passes. It returns how far behind
// its schedule the latest L went.
func (s *storm) sendLogins(start, deadline time.Time, stop *atomic.Bool, sent, errs *atomic.Int64) time.Duration {
	type due struct {
		i  int
		at time.Time
	}
	n := len(s.ms)
	interval := time.Second / time.Duration(s.cfg.Rate)
	first := func(i int) time.Time { return start.Add(time.Duration(i) * interval) }
	msgs := make([][]byte, n)
	for i, m := range s.ms {
		msgs[i] = []byte("L " + m.name)
	}
	send := func(i int) {
		if _, err := unix.Write(s.ms[i].fd, msgs[i]); err != nil {
			errs.Add(1)
			return
		}
		sent.Add(1)
	}
	// Retries fall due in the order they were queued (first logins are in
	// order, and each retry is 1 s after the one before): a FIFO suffices.
	var retries []due
	var lag time.Duration
	next := 0
	for !stop.Load() {
		now := time.Now()
		if !now.Before(deadline) {
			break
		}
		for len(retries) > 0 && !retries[0].at.After(now) {
			d := retries[0]
			retries = retries[1:]
			if s.okAt[d.i].Load() != 0 {
				continue
			}
			lag = max(lag, now.Sub(d.at))
			send(d.i)
			retries = append(retries, due{d.i, d.at.Add(s.cfg.Retry)})
		}
		for next < n && !first(next).After(now) {
			lag = max(lag, now.Sub(first(next)))
			s.firstL[next] = now.UnixNano()
			send(next)
			retries = append(retries, due{next, first(next).Add(s.cfg.Retry)})
			next++
		}
		wake := deadline
		if next < n {
			wake = first(next)
		}
		for len(retries) > 0 && s.okAt[retries[0].i].Load() != 0 {
			retries = retries[1:] // drop the members that have their OK
		}
		if len(retries) > 0 && retries[0].at.Before(wake) {
			wake = retries[0].at
		}
		if next == n && len(retries) == 0 {
			break // every member has its OK
		}
		time.Sleep(min(time.Until(wake), 10*time.Millisecond))
	}
	return lag
}

// receive is one receiver: a level-triggered epoll over its members and,
// on readiness, recvmmsg until the socket is empty (bounded per wake-up).
func (s *storm) receive(rc *stormRecv, stop *atomic.Bool, ready chan<- error) {
	fds := make([]int, len(rc.idx))
	for li, gi := range rc.idx {
		fds[li] = s.ms[gi].fd
	}
	var u udpBatch
	u.init(stormDgram)
	pollReadable(fds, 256, stop, ready, func(_, li int) { s.readMember(rc, rc.idx[li], &u) })
}

func (s *storm) readMember(rc *stormRecv, gi int, u *udpBatch) {
	fd := s.ms[gi].fd
	for rounds := 0; rounds < 16; rounds++ {
		for i := range u.hdrs {
			u.hdrs[i].Len = 0
		}
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&u.hdrs[0])), uintptr(len(u.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		if errno != 0 || int(n) <= 0 {
			return
		}
		now := time.Now().UnixNano()
		for i := 0; i < int(n); i++ {
			s.datagram(rc, gi, u.bufs[i][:u.hdrs[i].Len], now)
		}
		if int(n) < len(u.hdrs) {
			return
		}
	}
}

// datagram classifies what member gi received: before its OK, a classic
// client takes the first datagram as the answer to its L, so anything else
// is a join notice that came early or a refusal; after it, the check chat
// is looked for.
func (s *storm) datagram(rc *stormRecv, gi int, p []byte, now int64) {
	rc.rxTotal++
	if !s.inChat.Load() {
		s.rx[gi]++
	}
	if s.okAt[gi].Load() == 0 {
		switch {
		case string(p) == "OK":
			s.okAt[gi].Store(now)
			rc.oks.Add(1)
		case bytes.HasSuffix(p, joinSuffix):
			rc.early++
		default:
			rc.refusals++
			if rc.refusal == "" {
				rc.refusal = string(p[:min(len(p), 200)])
			}
		}
		return
	}
	if string(p) == "OK" {
		rc.repeatOK++
		return
	}
	if s.chatAt[gi] == 0 && bytes.HasSuffix(p, s.chatTail) {
		s.chatAt[gi] = now
		if int64(gi) != s.chatFrom.Load() {
			rc.chats.Add(1)
		}
	}
}

// udpDrops sums the drops column of /proc/net/udp (datagrams the kernel
// dropped because a socket's receive buffer was full), read once, over the
// sockets connected to the relays (IPv4; the members) and those bound to
// them (the relays' own).
func udpDrops(relays ...netip.AddrPort) (members, relaySock int64, err error) {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0, 0, err
	}
	want := make(map[string]bool, len(relays))
	for _, r := range relays {
		a := r.Addr().As4()
		want[fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], r.Port())] = true
	}
	lines := strings.Split(string(b), "\n")
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 13 {
			continue
		}
		d, err := strconv.ParseInt(f[len(f)-1], 10, 64)
		if err != nil {
			continue
		}
		switch {
		case want[f[2]]:
			members += d
		case want[f[1]]:
			relaySock += d
		}
	}
	return members, relaySock, nil
}

// printStorm prints the storm's figures and a PASS/FAIL line per requirement.
func printStorm(w io.Writer, r *StormReport) {
	fmt.Fprintf(w, "\n== %s: %d classic members logging in at %d/s (L re-sent every %v until OK), deadline %v; then a chat, deadline %v\n",
		stormScenario, r.Members, r.Rate, secs(r.RetryS), secs(r.DeadlineS), secs(r.ChatDeadlineS))
	flags := "the tool's usual chatrelay flags (--flood off; --max-members default 10000)"
	if len(r.RelayFlags) > 0 {
		flags = "the tool's usual chatrelay flags (--flood off) and " + strings.Join(r.RelayFlags, " ")
	}
	fmt.Fprintf(w, "relay: %s, %s\n", r.Relay, flags)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	allOK := "not every member"
	if r.AllOKAfterS > 0 {
		allOK = fmt.Sprintf("%.2f s after the first L", r.AllOKAfterS)
	}
	row("members with OK within the deadline", "%d of %d (%d started)", r.OKs, r.Members, r.Started)
	row("last OK", "%s", allOK)
	row("storm (until every OK or the deadline)", "%.2f s", r.StormS)
	row("login time, first L to OK (p50 / p99 / max)", "%.3f / %.3f / %.3f s", r.LoginP50S, r.LoginP99S, r.LoginMaxS)
	row("L datagrams sent", "%d (%d retries, %d send errors; schedule lag max %.1f ms)", r.LSent, r.Retries, r.SendErrors, r.ScheduleLagMs)
	row("datagrams per member in the storm (min / median / max)", "%d / %d / %d (%d in all)", r.RxMin, r.RxMedian, r.RxMax, r.RxTotal)
	row("early join notices (before the member's OK)", "%d", r.Early)
	refusal := ""
	if r.Refusal != "" {
		refusal = fmt.Sprintf(" (first: %q)", r.Refusal)
	}
	row("other answers before OK", "%d%s", r.Refusals, refusal)
	row("repeated OKs (answers to retries)", "%d", r.RepeatOKs)
	chat := fmt.Sprintf("%d of %d other members within %v", r.ChatReached, r.ChatExpected, secs(r.ChatDeadlineS))
	if r.ChatReached > 0 {
		chat += fmt.Sprintf(" (first after %.3f s, last after %.3f s)", r.ChatFirstS, r.ChatLastS)
	}
	if r.ChatFrom == "" {
		chat = "not sent"
	} else {
		chat = "from " + r.ChatFrom + ": " + chat
	}
	row("chat after the storm", "%s", chat)
	cpu := "?"
	if r.RelayCPUs >= 0 {
		cpu = fmt.Sprintf("%.2f s", r.RelayCPUs)
	}
	row("relay CPU (storm and chat)", "%s", cpu)
	row("load tool CPU", "%.2f cores", r.ToolCPUcores)
	drops := "?"
	if r.MemberDrops >= 0 {
		drops = fmt.Sprintf("%d at the members' sockets, %d at the relay's", r.MemberDrops, r.RelayDrops)
	}
	row("datagrams dropped at a full socket buffer", "%s", drops)
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	okLine := fmt.Sprintf("all %d members get OK within %v: %d did", r.Members, secs(r.DeadlineS), r.OKs)
	if r.AllOKAfterS > 0 {
		okLine += fmt.Sprintf(", the last after %.2f s", r.AllOKAfterS)
	}
	chatLine := fmt.Sprintf("the chat after the storm reaches all %d other members within %v: %d did", r.ChatExpected, secs(r.ChatDeadlineS), r.ChatReached)
	if r.PassChat && r.ChatReached > 0 {
		chatLine += fmt.Sprintf(", the last after %.3f s", r.ChatLastS)
	}
	fmt.Fprintf(w, "%s: %s\n", passFail(r.PassOK), okLine)
	fmt.Fprintf(w, "%s: %s\n", passFail(r.PassChat), chatLine)
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// secs prints seconds as a duration (30s, 1.5s).
func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
