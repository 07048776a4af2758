package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
	"go.uber.org/zap"
)

// Live is the part of a Server's configuration that Reconfigure changes
// while it serves, without dropping or disturbing any member. Everything
// else in Config (addresses, queue sizes, ring, backlog, ...) is fixed for
// the Server's life.
type Live struct {
	// MaxMembers bounds the room (at least 1). Lowering it below the
	// current count removes nobody: logins are refused ErrFull until
	// enough members have left.
	MaxMembers int
	// MaxPerIP bounds sessions per source IP (at least 1, or -1 for no
	// limit); like MaxMembers it applies to the next logins only.
	MaxPerIP int
	// LimitLoopbackPerIP applies MaxPerIP to loopback addresses too.
	LimitLoopbackPerIP bool
	// Lang is the wording of every text sent from now on: the next notice,
	// refusal or room event. Texts already sent stay as they were.
	Lang wire.Lang
	// V2Timeout and ClassicIdle (both positive) apply from the next sweep:
	// a member is evicted when it has been silent for longer than the
	// limit in force at that sweep.
	V2Timeout   time.Duration
	ClassicIdle time.Duration
	// Flood is the flood control in force; sessions and sources keep their
	// buckets (tokens carry over, capped at a new burst), and blocks and
	// bans already running keep their end time.
	Flood FloodSettings
}

// ErrNotServing is returned by Reconfigure before Serve is ready.
var ErrNotServing = errors.New("relay: not serving yet")

// validate reports the first field out of range.
func (l *Live) validate() error {
	switch {
	case l.MaxMembers < 1:
		return fmt.Errorf("relay: max members %d must be at least 1", l.MaxMembers)
	case l.MaxPerIP == 0 || l.MaxPerIP < -1:
		return fmt.Errorf("relay: max per IP %d must be at least 1, or -1 for no limit", l.MaxPerIP)
	case l.V2Timeout <= 0 || l.ClassicIdle <= 0:
		return errors.New("relay: timeouts must be positive")
	}
	if _, ok := wordings[l.Lang]; !ok {
		return fmt.Errorf("relay: unknown language %q", l.Lang)
	}
	if err := l.Flood.Validate(); err != nil {
		return fmt.Errorf("relay: flood settings: %w", err)
	}
	return nil
}

// liveState holds the settings that change while the server runs. Readers
// on the datagram path take one atomic load; Reconfigure publishes a new,
// never modified, liveConfig.
type liveState struct {
	mu  sync.Mutex // serialises Reconfigure, so its three stores are not interleaved
	cur atomic.Pointer[liveConfig]
}

// liveConfig is one published set of live settings. Flood settings live in
// the flood limiter and registry limits in the registry; they are kept here
// too so that Live reports what was set.
type liveConfig struct {
	Live
	words *wording // wordings[wire.Lang]
}

// init publishes cfg's settings (after setDefaults).
func (ls *liveState) init(cfg *Config) {
	ls.cur.Store(&liveConfig{
		Live: Live{
			MaxMembers:         cfg.MaxMembers,
			MaxPerIP:           cfg.MaxPerIP,
			LimitLoopbackPerIP: cfg.LimitLoopbackPerIP,
			Lang:               cfg.Lang,
			V2Timeout:          cfg.V2Timeout,
			ClassicIdle:        cfg.ClassicIdle,
			Flood:              *cfg.Flood,
		},
		words: wordings[cfg.Lang],
	})
}

// load returns the settings in force; never nil once New has returned.
func (ls *liveState) load() *liveConfig { return ls.cur.Load() }

// words returns the wording in force now. A handler that sends several
// texts takes it once, so that they agree.
func (s *Server) words() *wording { return s.knobs.load().words }

// Live returns the live settings in force now.
func (s *Server) Live() Live {
	l := s.knobs.load().Live
	l.Flood = s.flood.Settings()
	return l
}

// Reconfigure applies l to the running server while it serves: members
// stay logged in and keep their sessions, queues and sequence numbers;
// each setting applies from the next datagram (or sweep) that consults it.
// The settings are checked first: on an error nothing changes. Each
// setting switches atomically, but a datagram handled during the call may
// see some new settings and some old ones. Reconfigure returns
// ErrNotServing before Serve is ready, and is safe to call concurrently
// with everything else, including itself.
func (s *Server) Reconfigure(l Live) error {
	if err := l.validate(); err != nil {
		return err
	}
	select {
	case <-s.ready:
	default:
		return ErrNotServing
	}
	if s.reg == nil { // Serve failed before it could serve
		return ErrNotServing
	}
	s.knobs.mu.Lock()
	defer s.knobs.mu.Unlock()
	s.reg.setLimits(RegistryLimits{
		MaxMembers:         l.MaxMembers,
		MaxPerIP:           max(l.MaxPerIP, 0),
		LimitLoopbackPerIP: l.LimitLoopbackPerIP,
	})
	s.flood.SetSettings(l.Flood)
	l.Flood.Exempt = append([]netip.Prefix(nil), l.Flood.Exempt...) // the caller keeps its slice
	s.knobs.cur.Store(&liveConfig{Live: l, words: wordings[l.Lang]})
	s.log.Debug("reconfigured", zap.String("lang", string(l.Lang)), zap.Int("max_members", l.MaxMembers),
		zap.Int("max_per_ip", l.MaxPerIP), zap.Bool("flood", l.Flood.Enabled))
	return nil
}

// setLimits replaces the registry's limits; they apply to the next Join.
// Members already in stay, even beyond a lowered limit.
func (r *Registry) setLimits(l RegistryLimits) {
	r.mu.Lock()
	r.limits = l
	r.mu.Unlock()
}
