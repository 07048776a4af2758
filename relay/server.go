package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/chatrelay/chatrelay/relay/internal/flood"
	"github.com/chatrelay/chatrelay/relay/internal/udpio"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// The queue in front of the workers, where handlers may wait (a store
// behind the network; where they never wait the reader handles each batch
// and the backlog stays in the socket's buffer). There the reader moves
// datagrams out of the kernel's receive buffer as fast as they come, so
// under a burst it is this queue, not the socket's buffer, that decides
// between a late chat and a dropped one. DefaultQueueLimit holds about
// what the daemon's buffer would (16 MiB, which the kernel doubles; a small
// datagram costs it about 1 KiB): with 8,192 the relay dropped at the input
// where a loop that leaves its backlog in the kernel delivered every chat,
// at the same CPU per delivery (docs/BENCHMARKS.md, issue 11 round ten).
// Each waiting datagram holds a buffer of MaxDatagram+1 bytes, so the
// default costs at most about 33 MiB, only while the relay is behind.
// DefaultSenderQueueLimit is a quarter of it, so that one sender cannot
// fill it.
const (
	DefaultQueueLimit       = 32768
	DefaultSenderQueueLimit = 8192
)

// Config configures a Server. The zero value of every field means its
// default, filled in by New.
type Config struct {
	// MaxDatagram bounds an incoming datagram in bytes; longer ones are
	// dropped as oversize. Default DefaultMaxDatagram (1024).
	MaxDatagram int
	// MaxMembers bounds the room. Default 10,000.
	MaxMembers int
	// MaxPerIP bounds sessions per source IP. Default 16; -1 disables.
	MaxPerIP int
	// LimitLoopbackPerIP applies MaxPerIP to loopback addresses too.
	// Default false: loopback is exempt (local bots, tests, load tools).
	LimitLoopbackPerIP bool
	// Workers bounds how many Executor tasks run at once: the tasks that
	// send the fan-out of batches the reader handled, or, where handlers
	// may wait, the workers that handle. It should equal the Executor's
	// capacity. Default 16.
	Workers int
	// QueueLimit bounds the datagrams waiting for a worker, over all
	// senders, where handlers may wait (elsewhere the reader handles each
	// batch and the backlog waits in the socket); beyond it datagrams are
	// dropped (queue_full). Default DefaultQueueLimit.
	QueueLimit int
	// SenderQueueLimit bounds the datagrams waiting from one sender;
	// beyond it that sender's datagrams are dropped (sender_queue).
	// Default DefaultSenderQueueLimit.
	SenderQueueLimit int
	// Lang selects the wording of notices and refusals. Default LangEN.
	Lang wire.Lang
	// DisableClassic drops every classic request (counted as classic_off),
	// for relays reachable from the internet: classic clients cannot prove
	// their address, so a spoofed classic login could aim replies at a
	// victim. Default false: classic is served.
	DisableClassic bool
	// V2Timeout evicts a v2 session silent for longer. Default 15 s
	// (clients heartbeat every 2 s).
	V2Timeout time.Duration
	// ClassicIdle evicts a classic member that sent nothing for longer.
	// Default 1 h: classic clients cannot heartbeat, and people read.
	ClassicIdle time.Duration
	// Ring is how many recent events the room keeps for repair. Default 4096.
	Ring int
	// Backlog is how many recent events a joining v2 member receives as
	// history. Default 20; -1 sends none.
	Backlog int
	// SendBudget bounds a v2 datagram the relay packs several frames into.
	// Default 1200 bytes, safe under common path MTUs.
	SendBudget int
	// LoopbackSendBudget is SendBudget for members on a loopback address,
	// whose path MTU is 64 KiB: more frames per datagram, nothing
	// fragments. Default 8192; -1 means SendBudget.
	LoopbackSendBudget int
	// FanoutShards is how many goroutines may send the room's fan-out at
	// once, each to its share of the members. Default: sixteen per CPU the
	// Go runtime may use (GOMAXPROCS, but no more than the machine's CPUs:
	// a daemon may run more Ps than CPUs), at most 64. A shard's sender spends
	// nearly all its time in sendmmsg, where the kernel also delivers on
	// loopback and wakes the receivers, and is preempted there: with more
	// senders than CPUs the CPUs stay busy. A shard is also the unit that
	// one goroutine sends at a time, and members fall into shards by
	// address: in a small room a few shards hold two or three members and
	// the round waits for them; finer shards even that out (room10, 32
	// shards against 8: about 7% more deliveries/s at the limit;
	// docs/BENCHMARKS.md, issue 11).
	FanoutShards int
	// NoBatch reads and sends one datagram per system call instead of many
	// (recvmmsg and sendmmsg on Linux); for comparisons. Default false.
	NoBatch bool
	// SweepEvery is how often idle and silent members are looked for.
	// Default 1 s.
	SweepEvery time.Duration
	// MaxRooms bounds the rooms on the relay, main and configured ones
	// included. Default 10,000.
	MaxRooms int
	// MaxRoomsPerMember bounds the rooms one member is in. Default 100.
	MaxRoomsPerMember int
	// AnnounceLimit is the room size above which joins and leaves are
	// announced in batches, at most once a second per room. Default 100;
	// -1 announces each one.
	AnnounceLimit int
	// Rooms are configured at start: they exist while empty.
	Rooms []RoomSettings
	// Names is the directory that decides who holds a name. Default: in
	// memory, this node only.
	Names NameDirectory
	// Logs opens the rooms' logs. Default: in memory, Ring events per room,
	// lost at exit.
	Logs RoomLogs
	// Sessions, if not nil, keeps sessions beyond this process: v2 clients
	// resume after a crash or on another node, classic members are taken
	// back at start (see sessions.go). Default: none.
	Sessions SessionStore
	// Node names this relay among those sharing a store (its classic
	// sessions are its own to take back at start).
	Node string
	// Cluster, if not nil, is what the relays sharing the store tell each
	// other: their sessions and direct messages (cluster.go). Default: none.
	Cluster Cluster
	// Operator keeps what the operator sets (bans, mutes, the lockdown,
	// rooms' topic, limit and key) across restarts and, shared, across
	// relays: New loads it, each change is stored before it applies, and
	// Serve applies the changes other relays make (operator.go). Default
	// nil: in this Server's memory only, lost at exit.
	Operator OperatorStore
	// Flood configures flood control. nil means DefaultFloodSettings() (on);
	// FloodOff() disables it.
	Flood *FloodSettings
	// Executor runs handler tasks. Default: one goroutine per task, which
	// is still bounded by Workers.
	Executor Executor
	// Observer receives counts. Default NopObserver.
	Observer Observer
	// Logger receives structured logs. Default zap.NewNop().
	Logger *zap.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time

	// handOff: the reader hands every datagram to the dispatcher and its
	// workers, as where handlers may wait, and never handles a batch
	// itself (set by tests that hold the executor or the fan-out's sender,
	// which the reader would otherwise be).
	handOff bool
}

func (c *Config) setDefaults() error {
	if c.MaxDatagram == 0 {
		c.MaxDatagram = wire.DefaultMaxDatagram
	}
	if c.MaxMembers == 0 {
		c.MaxMembers = 10000
	}
	if c.MaxPerIP == 0 {
		c.MaxPerIP = 16
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	if c.QueueLimit == 0 {
		c.QueueLimit = DefaultQueueLimit
	}
	if c.SenderQueueLimit == 0 {
		c.SenderQueueLimit = DefaultSenderQueueLimit
	}
	if c.Lang == "" {
		c.Lang = wire.LangEN
	}
	if c.V2Timeout == 0 {
		c.V2Timeout = 15 * time.Second
	}
	if c.ClassicIdle == 0 {
		c.ClassicIdle = time.Hour
	}
	if c.Ring == 0 {
		c.Ring = 4096
	}
	switch {
	case c.Backlog == 0:
		c.Backlog = 20
	case c.Backlog < 0:
		c.Backlog = 0
	}
	if c.SendBudget == 0 {
		c.SendBudget = 1200
	}
	switch {
	case c.LoopbackSendBudget == 0:
		c.LoopbackSendBudget = 8192
	case c.LoopbackSendBudget < 0:
		c.LoopbackSendBudget = c.SendBudget
	}
	if c.FanoutShards == 0 {
		c.FanoutShards = min(16*min(runtime.GOMAXPROCS(0), runtime.NumCPU()), 64)
	}
	if c.SweepEvery == 0 {
		c.SweepEvery = time.Second
	}
	if c.MaxRooms == 0 {
		c.MaxRooms = 10000
	}
	if c.MaxRoomsPerMember == 0 {
		c.MaxRoomsPerMember = 100
	}
	if c.AnnounceLimit == 0 {
		c.AnnounceLimit = 100
	}
	if c.Names == nil {
		c.Names = newMemDirectory()
	}
	if c.Logs == nil {
		c.Logs = memLogs{ring: c.Ring}
	}
	if c.Executor == nil {
		c.Executor = goExecutor{}
	}
	if c.Observer == nil {
		c.Observer = NopObserver{}
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Flood == nil {
		fs := DefaultFloodSettings()
		c.Flood = &fs
	}
	if err := c.Flood.Validate(); err != nil {
		return fmt.Errorf("relay: flood settings: %w", err)
	}
	switch {
	case c.MaxDatagram < 16 || c.MaxDatagram > 65507:
		return fmt.Errorf("relay: max datagram %d out of range 16..65507", c.MaxDatagram)
	case c.MaxMembers < 1:
		return fmt.Errorf("relay: max members %d must be at least 1", c.MaxMembers)
	case c.FanoutShards < 1 || c.FanoutShards > 64:
		return fmt.Errorf("relay: fan-out shards %d out of range 1..64", c.FanoutShards)
	case c.Workers < 1 || c.QueueLimit < 1 || c.SenderQueueLimit < 1:
		return errors.New("relay: workers and queue limits must be at least 1")
	case c.MaxRooms < 1 || c.MaxRoomsPerMember < 1:
		return errors.New("relay: max rooms and max rooms per member must be at least 1")
	case c.Ring < 16:
		return fmt.Errorf("relay: ring %d must be at least 16", c.Ring)
	case c.Backlog > c.Ring:
		return fmt.Errorf("relay: backlog %d is larger than the ring (%d)", c.Backlog, c.Ring)
	case c.SendBudget < 512 || c.SendBudget > 65507:
		return fmt.Errorf("relay: send budget %d out of range 512..65507", c.SendBudget)
	case c.LoopbackSendBudget < 512 || c.LoopbackSendBudget > 65507:
		return fmt.Errorf("relay: loopback send budget %d out of range 512..65507", c.LoopbackSendBudget)
	case c.V2Timeout < 0 || c.ClassicIdle < 0 || c.SweepEvery < 0:
		return errors.New("relay: timeouts must be positive")
	}
	if _, ok := wordings[c.Lang]; !ok {
		return fmt.Errorf("relay: unknown language %q", c.Lang)
	}
	return nil
}

type goExecutor struct{}

func (goExecutor) Invoke(task func()) error { go task(); return nil }

// Server is the relay. Create it with New, run it with Serve, stop it with
// Shutdown.
type Server struct {
	cfg       Config
	wallClock bool      // cfg.Now is time.Now: handle's own reading serves as the handler's clock
	knobs     liveState // the settings Reconfigure changes while serving (reload.go)
	obs       *counting
	log       *zap.Logger
	bufs      sync.Pool // *[]byte of cfg.MaxDatagram+1 bytes

	moderation *moderation // the operator's bans, mutes and lockdown (moderation.go)
	ops        *opState    // the operator's state in Config.Operator (operator.go)

	main    *room   // the room classic members live in, and v2 members start in
	rooms   roomSet // every room, main included
	pending pendingRooms
	remote  remoteSessions // the other relays' sessions (cluster.go)
	fan     *fanout        // the node's Delivery
	out     Delivery
	cookies *cookies
	flood   *flood.Limiter
	bg      sync.WaitGroup // evictions started off the reader
	// onReader: handlers never wait (nothing behind the network) and the
	// reader handles its read batches itself; send sends their fan-out.
	onReader bool
	send     *flushers

	// set once by Serve, read-only afterwards
	conn  *udpio.Conn   // sends everything; the first of conns
	conns []*udpio.Conn // one reader each
	reg   *Registry
	disp  *dispatcher
	start time.Time

	serving  atomic.Bool
	closing  atomic.Bool
	ready    chan struct{} // closed when Serve has set up and starts reading
	readDone chan struct{} // closed when every read loop has returned

	stopSweep chan struct{} // closed by Shutdown
	sweepDone chan struct{} // closed when the sweeper returns
}

// New checks cfg and returns a Server ready to Serve.
func New(cfg Config) (*Server, error) {
	wallClock := cfg.Now == nil
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	mainLog, err := cfg.Logs.Open(wire.RoomMain)
	if err != nil {
		return nil, fmt.Errorf("relay: open the log of room %s: %w", wire.RoomMain, err)
	}
	obs := &counting{next: cfg.Observer}
	s := &Server{
		cfg:       cfg,
		wallClock: wallClock,
		obs:       obs,
		log:       cfg.Logger,
		ready:     make(chan struct{}),
		readDone:  make(chan struct{}),
		main:      newRoom(wire.RoomMain, mainLog),
		fan:       newFanout(cfg.FanoutShards, obs, cfg.Logger.Named("fanout"), cfg.SendBudget, cfg.LoopbackSendBudget),
		flood:     flood.New(*cfg.Flood, cfg.Now),
		cookies:   newCookies(),
		stopSweep: make(chan struct{}),
		sweepDone: make(chan struct{}),
	}
	s.out = s.fan
	s.main.key = wire.RoomMain
	s.rooms.byKey = map[string]*room{wire.RoomMain: s.main}
	s.rooms.onSize = obs.Rooms
	obs.Rooms(1)
	s.knobs.init(&cfg)
	s.moderation = newModeration(cfg.Now)
	s.ops = newOpState(cfg.Operator, cfg.Logger.Named("operator"))
	if cfg.Operator != nil {
		if err := s.loadOperator(); err != nil {
			return nil, err
		}
	}
	for _, rs := range cfg.Rooms { // after the operator's state: the file wins for what it states
		if err := s.fileRoom(rs); err != nil {
			return nil, fmt.Errorf("relay: room %q: %w", rs.Name, err)
		}
	}
	size := cfg.MaxDatagram + 1 // one spare byte tells an oversize datagram apart
	s.bufs.New = func() any { b := make([]byte, size); return &b }
	// Handlers wait on the network where a store outside this process
	// keeps the rooms, names or sessions: then every sender's lane may have
	// a worker of its own (InProcess).
	mayWait := !inProcess(cfg.Names) || !inProcess(cfg.Logs) || cfg.Sessions != nil || cfg.Cluster != nil
	s.disp = newDispatcher(cfg.Executor, cfg.QueueLimit, cfg.SenderQueueLimit, cfg.Workers, mayWait, s.obs, s.handle, s.release, s.flushBatch)
	s.onReader = !mayWait && !cfg.handOff
	s.send = newFlushers(cfg.Executor, cfg.Workers, s.flushBatch)
	return s, nil
}

// Serve reads datagrams from uc until Shutdown. It returns nil after
// Shutdown. Serve takes the socket over: where it reads and sends with its
// own system calls (Linux, batching on) it keeps a duplicate of the
// descriptor, closes uc at once (taking the socket out of Go's poller, see
// udpio.NewOpts) and closes the socket when Shutdown returns; elsewhere it
// reads uc until Shutdown or until the caller closes uc. Closing uc after
// Shutdown is harmless either way. Serve (or ServeGroup) may be called
// once.
func (s *Server) Serve(uc *net.UDPConn) error { return s.ServeGroup([]*net.UDPConn{uc}) }

// ServeGroup is Serve on several sockets bound to the same address (an
// SO_REUSEPORT group, see Listen): one reader goroutine each, one shared
// dispatcher, so each sender's order is kept as with one socket (the
// kernel sends a sender's datagrams always to the same socket). Everything
// the relay sends leaves through the first socket.
func (s *Server) ServeGroup(ucs []*net.UDPConn) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("relay: Serve called twice")
	}
	defer close(s.readDone)
	if len(ucs) == 0 {
		close(s.ready)
		return errors.New("relay: no socket to serve")
	}
	conns := make([]*udpio.Conn, 0, len(ucs))
	for _, uc := range ucs {
		conn, err := udpio.NewOpts(uc, udpio.Options{Batch: !s.cfg.NoBatch})
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			close(s.ready)
			return err
		}
		conns = append(conns, conn)
	}
	s.conn, s.conns = conns[0], conns
	s.fan.conn = s.conn
	// Only the first socket sends, but the kernel queues an ICMP error on
	// the group's socket that the peer's datagrams reach (it looks the
	// error up like a datagram from the peer): every socket listens.
	for _, c := range conns {
		if err := c.EnableRecvErr(); err != nil {
			s.log.Warn("cannot receive ICMP errors: classic clients whose port is gone stay until --classic-idle", zap.Error(err))
			break
		}
	}
	s.reg = NewRegistry(RegistryLimits{
		MaxMembers:         s.cfg.MaxMembers,
		MaxPerIP:           max(s.cfg.MaxPerIP, 0),
		LimitLoopbackPerIP: s.cfg.LimitLoopbackPerIP,
	}, s.cfg.Names, s.conn.Dest, s.obs.Members)
	s.start = s.cfg.Now()
	s.followAll()
	s.restoreClassic()
	defer s.watchOperator()() // stopped once the readers return, before readDone
	defer s.watchCluster()()
	go s.sweeper()
	close(s.ready)
	s.log.Info("relay listening", zap.Stringer("addr", ucs[0].LocalAddr()),
		zap.String("lang", string(s.cfg.Lang)), zap.Int("max_members", s.cfg.MaxMembers),
		zap.Int("readers", len(conns)), zap.Bool("batch", s.conn.Batching()))
	errs := make(chan error, len(conns))
	for _, c := range conns[1:] {
		go func() { errs <- s.readLoop(c) }()
	}
	err := s.readLoop(conns[0])
	for range conns[1:] {
		err = errors.Join(err, <-errs)
	}
	return err
}

// quietBatch is the largest read batch whose fan-out the reader sends
// itself (FlushQuiet) if it waited quietGap for it and no task is sending,
// where handlers never wait; where they may wait, the largest that the reader,
// finding no worker running, yields its thread to the one worker it woke
// (readLoop). At the latency step (20 members, 200 chats/s) handing a
// chat to a worker cost 40-80 µs of median delivery against a
// one-goroutine loop; sent from the reader it costs none with one delivery
// per chat (docs/BENCHMARKS.md, issue 11 round eight). Under load read
// batches are larger and datagrams keep coming: the reader handles and
// pool tasks send (flushers), or, where handlers may wait, it only reads
// and hands off.
const quietBatch = 4

// quietGap is how long the reader must have waited in the read for a
// batch before it sends the batch's fan-out itself. Under load a small
// batch with no task sending also comes at the start of a burst (room10 at
// 60,000 chats/s: 28-183 times in 3 s; with the gap 53-60), and while the
// reader sends its fan-out it reads nothing: a batch that came meanwhile,
// however small, is the tasks' to send (in a room of 1,000, 999 datagrams
// a chat).
const quietGap = 500 * time.Microsecond

// yieldThread lets the reader's goroutine be rescheduled, on any thread:
// one that runs or sits in system calls for 10 ms without that is
// preempted by the runtime's sysmon, which then takes its P and polls
// every 20 µs for a while (at the latency step, 5,473 sysmon sleeps in 3 s
// against 277). The reader's thread is its own again before it reads.
func yieldThread() {
	runtime.UnlockOSThread()
	runtime.Gosched()
	runtime.LockOSThread()
}

// readLoop reads, checks size and, where handlers never wait, handles
// each batch itself and leaves the sending to tasks (nats-server's read
// loop); where they may wait it hands each batch off without blocking
// (miekg/dns serveUDP, wireguard-go RoutineReceiveIncoming). Garbage is
// counted, never answered. Each datagram's buffer goes with it to its
// handler, and the reader takes a fresh one in its place: exactly one Put
// per Get.
func (s *Server) readLoop(conn *udpio.Conn) error {
	// The reader sleeps and wakes in recvmmsg's kernel wait on a thread of
	// its own, not through the scheduler and its netpoller (udpio.Reader).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := conn.NewReader()
	max := s.cfg.MaxDatagram
	pkts := make([]udpio.Packet, udpio.ReadBatch)
	bufs := make([]*[]byte, len(pkts))
	for i := range bufs {
		bufs[i] = s.bufs.Get().(*[]byte)
		pkts[i].Buf = *bufs[i]
	}
	defer func() {
		for _, b := range bufs {
			s.bufs.Put(b)
		}
	}()
	failures := 0
	var rxDrops uint32                   // the kernel's drop count already reported
	gs := make([]datagram, 0, len(pkts)) // the batch for the dispatcher
	var refused []refusal
	for {
		asked := time.Now()
		n, err := r.Read(pkts)
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if isICMPError(err) || errors.Is(err, udpio.ErrQueuedErrors) {
				// A queued ICMP error surfaces here first: read the queue.
				s.drainICMP()
				continue
			}
			// Errors such as a queued ICMP error are counted, never fatal.
			// A socket that fails on every read would spin: back off.
			s.obs.ReadError()
			failures++
			if failures > 10 {
				time.Sleep(time.Duration(min(failures, 100)) * time.Millisecond)
			}
			s.log.Debug("read error", zap.Error(err))
			continue
		}
		failures = 0
		waited := time.Since(asked) >= quietGap // in Read: nothing came meanwhile
		if d := conn.RxDrops(); d != rxDrops {
			// The kernel dropped datagrams at our socket (receive buffer
			// full): they are lost before we ever saw them, but counted.
			for i := d - rxDrops; i > 0; i-- {
				s.obs.DatagramDropped(DropRcvbuf)
			}
			rxDrops = d
		}
		for i := range pkts[:n] {
			p := &pkts[i]
			s.obs.DatagramReceived()
			switch {
			case p.N == 0:
				s.obs.DatagramDropped(DropEmpty)
				continue
			case p.N > max:
				s.obs.DatagramDropped(DropOversize)
				continue
			}
			if v := s.flood.AllowDatagram(p.From); !v.Allowed() {
				s.floodDrop(v, "source", p.From.String())
				continue
			}
			gs = append(gs, datagram{buf: bufs[i], n: p.N, from: p.From, local: p.Local})
			bufs[i] = s.bufs.Get().(*[]byte)
			p.Buf = *bufs[i]
		}
		quiet := len(gs) <= quietBatch
		if len(gs) > 0 && s.onReader {
			// Handlers never wait: the reader handles the batch, in
			// order, where the datagrams are warm, and tasks send its
			// fan-out (flushers); while that is behind, publishing waits
			// for it (journalLimit) and the backlog waits in the socket.
			// A quiet batch that the reader waited for, with no task
			// sending, leaves at once from here, as a one-goroutine loop
			// would send it (FlushQuiet). Not one that came while the
			// reader handled or sent: in a room of 1,000 each chat is
			// 999 datagrams, and a reader sending them all itself would
			// be the relay's only sender.
			for i := range gs {
				s.handle(&gs[i])
				gs[i] = datagram{}
			}
			gs = gs[:0]
			if quiet && waited && s.send.idle() {
				s.flushQuiet()
				yieldThread()
			} else {
				s.fan.packIfFull()
				s.send.kick()
			}
			continue
		}
		if len(gs) > 0 { // the whole batch in one step: one lock, one worker woken
			var h handoff
			refused, h = s.disp.enqueueAll(gs, refused)
			gs = gs[:0]
			if h == wokeIdle && quiet {
				// Handlers may wait (a store behind the network), so a
				// worker handles the batch: let it run here, now, on this
				// CPU where the datagram is warm, instead of waiting for
				// an idle thread to wake and steal it.
				yieldThread()
			}
		}
	}
}

// Shutdown stops reading, lets queued datagrams be handled until ctx ends,
// then tells every member the relay is shutting down (a notice, then
// EXIT). It returns ctx.Err() if the queue could not drain in time.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.closing.CompareAndSwap(false, true) {
		return nil // already shut down (or shutting down)
	}
	if !s.serving.Load() {
		return nil
	}
	<-s.ready
	if s.conn == nil { // Serve failed before reading
		return nil
	}
	// Unblock the readers without closing the sockets: the first is still
	// needed to drain and to say goodbye.
	for _, c := range s.conns {
		c.StopReading()
	}
	<-s.readDone
	s.send.wait()
	s.unfollowAll()
	close(s.stopSweep)
	<-s.sweepDone
	s.bg.Wait()
	err := s.disp.close(ctx)
	s.out.Flush()    // nothing queued is left behind
	s.fan.waitIdle() // a broadcast from the admin socket may still be leaving
	members := s.reg.Members()
	// Classic members get a notice and EXIT; v2 members are told the relay
	// restarts, and log in again by themselves when it is back.
	notice := classicLine(s.words().Admin, s.words().shutdown)
	restart := wire.EncodeV2(&wire.Frame{T: wire.FrameRestart, Room: s.main.name, Epoch: s.main.log.Epoch()})
	for _, m := range members {
		s.forgetSession(m) // told the relay is going: nobody resumes it
		if m.Proto == ProtoV2 {
			s.out.Send(m, restart)
			continue
		}
		s.out.Send(m, notice)
		s.out.Send(m, []byte(wire.ReplyExit))
	}
	for _, c := range s.conns { // the sockets were taken over (udpio.NewOpts): closed here
		_ = c.Close()
	}
	s.log.Info("relay server stopped", zap.Int("members_told", len(members)), zap.NamedError("drain", err))
	return err
}

// isICMPError reports a read error that is an ICMP error the kernel queued
// for the socket (IP_RECVERR), not a failure of the socket.
func isICMPError(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH)
}

// Ready is closed once Serve has set up and is reading (or has failed).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the UDP address the server reads from, once Serve runs.
func (s *Server) Addr() net.Addr {
	if s.conn == nil {
		return nil
	}
	return s.conn.LocalAddr()
}

// Running returns how many Executor tasks run now: the workers handling
// datagrams where handlers may wait, and the tasks sending the fan-out of
// batches the reader handled (chatrelay_pool_running).
func (s *Server) Running() int {
	s.disp.mu.Lock()
	defer s.disp.mu.Unlock()
	return s.disp.workers + int(s.send.running.Load())
}

// Registry returns the member registry, once Serve runs.
func (s *Server) Registry() *Registry { return s.reg }

// Stats returns a snapshot of the server's own counters.
func (s *Server) Stats() Stats {
	st := s.obs.snapshot()
	if s.reg != nil {
		st.Members = s.reg.Len()
	}
	st.Uptime = s.cfg.Now().Sub(s.start)
	return st
}

func (s *Server) release(g *datagram) {
	s.bufs.Put(g.buf)
	g.buf = nil
}

// handle runs one datagram through the handler table, recovering a panic
// so that one bad datagram cannot stop the relay or its sender's lane.
func (s *Server) handle(g *datagram) {
	start := time.Now()
	now := start // one reading of the clock per datagram where the clock is the wall clock
	if !s.wallClock {
		now = s.cfg.Now()
	}
	defer func() {
		if v := recover(); v != nil {
			s.obs.Panic()
			s.obs.DatagramDropped(DropPanic)
			s.log.Error("handler panic recovered", zap.Any("panic", v),
				zap.Stringer("from", g.from), zap.StackSkip("stack", 1))
		}
		s.release(g)
		s.obs.HandlerDone(time.Since(start).Seconds())
	}()
	s.dispatch(g, now)
}

// sweeper evicts v2 sessions silent for longer than V2Timeout and classic
// members idle for longer than ClassicIdle, until Shutdown.
func (s *Server) sweeper() {
	defer close(s.sweepDone)
	t := time.NewTicker(s.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stopSweep:
			return
		case <-t.C:
		}
		s.drainICMP()
		s.flushAnnouncements()
		s.flushFollowed()
		now := s.cfg.Now()
		lv := s.knobs.load()
		for _, m := range s.reg.Members() {
			limit := lv.ClassicIdle
			if m.Proto == ProtoV2 {
				limit = lv.V2Timeout
			}
			if now.Sub(m.LastSeen()) > limit {
				s.evict(m, now)
			}
		}
	}
}

// evict removes a member that went silent: it is told (if it can still
// hear), the others get a timeout event.
func (s *Server) evict(m *Member, now time.Time) {
	if !s.remove(m, now) {
		return
	}
	s.log.Info("evicted", zap.String("name", m.Name), zap.Stringer("addr", m.Addr()), zap.String("proto", m.Proto),
		zap.Duration("silent", now.Sub(m.LastSeen())))
	if m.Proto == ProtoClassic {
		s.tellRemoved(m, s.words().idleSelf)
	}
	s.announceGone(m, wire.FrameTimeout, "", classicLine(s.words().TimedOut, m.Name), KindTimeout)
	s.out.Flush()
}
