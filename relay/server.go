package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
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
	// Workers bounds how many handler tasks run at once. It should equal
	// the Executor's capacity. Default 16.
	Workers int
	// QueueLimit bounds the datagrams waiting for a worker, over all
	// senders; beyond it datagrams are dropped (queue_full). Default 8192.
	QueueLimit int
	// SenderQueueLimit bounds the datagrams waiting from one sender;
	// beyond it that sender's datagrams are dropped (sender_queue).
	// Default 1024.
	SenderQueueLimit int
	// Lang selects the wording of notices and refusals. Default LangEN.
	Lang Lang
	// Executor runs handler tasks. Default: one goroutine per task, which
	// is still bounded by Workers.
	Executor Executor
	// Observer receives counts. Default NopObserver.
	Observer Observer
	// Logger receives structured logs. Default zap.NewNop().
	Logger *zap.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.MaxDatagram == 0 {
		c.MaxDatagram = DefaultMaxDatagram
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
		c.QueueLimit = 8192
	}
	if c.SenderQueueLimit == 0 {
		c.SenderQueueLimit = 1024
	}
	if c.Lang == "" {
		c.Lang = LangEN
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
	switch {
	case c.MaxDatagram < 16 || c.MaxDatagram > 65507:
		return fmt.Errorf("relay: max datagram %d out of range 16..65507", c.MaxDatagram)
	case c.MaxMembers < 1:
		return fmt.Errorf("relay: max members %d must be at least 1", c.MaxMembers)
	case c.Workers < 1 || c.QueueLimit < 1 || c.SenderQueueLimit < 1:
		return errors.New("relay: workers and queue limits must be at least 1")
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
	cfg   Config
	words *wording
	obs   *counting
	log   *zap.Logger
	bufs  sync.Pool // *[]byte of cfg.MaxDatagram+1 bytes

	// set once by Serve, read-only afterwards
	conn  *udpio.Conn
	reg   *Registry
	disp  *dispatcher
	start time.Time

	serving  atomic.Bool
	closing  atomic.Bool
	ready    chan struct{} // closed when Serve has set up and starts reading
	readDone chan struct{} // closed when the read loop returns
}

// New checks cfg and returns a Server ready to Serve.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		words:    wordings[cfg.Lang],
		obs:      &counting{next: cfg.Observer},
		log:      cfg.Logger,
		ready:    make(chan struct{}),
		readDone: make(chan struct{}),
	}
	size := cfg.MaxDatagram + 1 // one spare byte tells an oversize datagram apart
	s.bufs.New = func() any { b := make([]byte, size); return &b }
	s.disp = newDispatcher(cfg.Executor, cfg.QueueLimit, cfg.SenderQueueLimit, cfg.Workers, s.obs, s.handle, s.release)
	return s, nil
}

// Serve reads datagrams from uc until Shutdown (or until uc is closed). It
// returns nil after Shutdown. The caller owns uc and closes it after
// Shutdown returns. Serve may be called once.
func (s *Server) Serve(uc *net.UDPConn) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("relay: Serve called twice")
	}
	defer close(s.readDone)
	conn, err := udpio.New(uc)
	if err != nil {
		close(s.ready)
		return err
	}
	s.conn = conn
	s.reg = NewRegistry(RegistryLimits{
		MaxMembers:         s.cfg.MaxMembers,
		MaxPerIP:           max(s.cfg.MaxPerIP, 0),
		LimitLoopbackPerIP: s.cfg.LimitLoopbackPerIP,
	}, conn.Dest, s.obs.Members)
	s.start = s.cfg.Now()
	close(s.ready)
	s.log.Info("relay listening", zap.Stringer("addr", uc.LocalAddr()),
		zap.String("lang", string(s.cfg.Lang)), zap.Int("max_members", s.cfg.MaxMembers))
	return s.readLoop(uc)
}

// readLoop only reads, checks size and hands off without blocking; it never
// parses or answers (miekg/dns serveUDP, wireguard-go RoutineReceiveIncoming).
func (s *Server) readLoop(uc *net.UDPConn) error {
	oob := make([]byte, udpio.OOBSize)
	max := s.cfg.MaxDatagram
	buf := s.bufs.Get().(*[]byte)
	defer func() { s.bufs.Put(buf) }()
	failures := 0
	for {
		n, from, local, err := s.conn.Read(*buf, oob)
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
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
		s.obs.DatagramReceived()
		switch {
		case n == 0:
			s.obs.DatagramDropped(DropEmpty)
			continue
		case n > max:
			s.obs.DatagramDropped(DropOversize)
			continue
		}
		s.disp.enqueue(datagram{buf: buf, n: n, from: from, local: local})
		buf = s.bufs.Get().(*[]byte)
	}
}

// Shutdown stops reading, lets queued datagrams be handled until ctx ends,
// then tells every member the relay is shutting down (a notice, then
// EXIT). It returns ctx.Err() if the queue could not drain in time.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.closing.CompareAndSwap(false, true) {
		return errors.New("relay: Shutdown called twice")
	}
	if !s.serving.Load() {
		return nil
	}
	<-s.ready
	if s.conn == nil { // Serve failed before reading
		return nil
	}
	// Unblock the reader without closing the socket: it is still needed
	// to drain and to say goodbye.
	_ = s.conn.SetReadDeadline(time.Unix(1, 0))
	<-s.readDone
	err := s.disp.close(ctx)
	members := s.reg.Members()
	if len(members) > 0 {
		notice := classicLine(s.words.admin, s.words.shutdown)
		s.fanout(notice, nil, KindNotice)
		s.fanout([]byte(ReplyExit), nil, "")
	}
	s.log.Info("relay server stopped", zap.Int("members_told", len(members)), zap.NamedError("drain", err))
	return err
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

// Running returns how many worker tasks are handling datagrams now.
func (s *Server) Running() int {
	s.disp.mu.Lock()
	defer s.disp.mu.Unlock()
	return s.disp.workers
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
	s.dispatch(g)
}

// sendTo sends b to a single address, counting failures.
func (s *Server) sendTo(b []byte, d *udpio.Dest) {
	if err := s.conn.Send(b, d); err != nil {
		s.obs.SendError()
		s.log.Debug("send failed", zap.Stringer("to", d.Addr), zap.Error(err))
		return
	}
	s.obs.Delivered(1)
}

// fanout sends payload to every member except except, from a snapshot and
// with no lock held. A failing recipient is counted and skipped; no send
// blocks. kind, when not empty, counts one broadcast.
func (s *Server) fanout(payload []byte, except *Member, kind string) {
	s.fanoutTo(s.reg.Members(), payload, except, kind)
}

// fanoutTo is fanout to a given snapshot.
func (s *Server) fanoutTo(members []*Member, payload []byte, except *Member, kind string) {
	delivered := 0
	for _, m := range members {
		if m == except {
			continue
		}
		if err := s.conn.Send(payload, &m.Dest); err != nil {
			s.obs.SendError()
			continue
		}
		delivered++
	}
	s.obs.Delivered(delivered)
	if kind != "" {
		s.obs.Broadcast(kind)
	}
}
