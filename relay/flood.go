package relay

import (
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/chatrelay/chatrelay/relay/internal/flood"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// FloodSettings configures flood control: per-source and per-session rates
// and bursts, temporary blocks for sustained abuse, per-IP login bans and
// the prefixes exempt from them. See relay/internal/flood for the fields
// and their defaults.
type FloodSettings = flood.Settings

// DefaultFloodSettings returns flood control on, with the defaults a busy
// room accepts.
func DefaultFloodSettings() FloodSettings { return flood.DefaultSettings() }

// FloodOff returns settings that disable flood control (benchmarks, load
// tools, trusted networks).
func FloodOff() *FloodSettings { return &FloodSettings{Enabled: false} }

// SetFlood swaps the flood control settings live; sessions keep their
// buckets.
func (s *Server) SetFlood(fs FloodSettings) error {
	if err := fs.Validate(); err != nil {
		return err
	}
	s.flood.SetSettings(fs)
	return nil
}

// floodDrop counts a datagram or chat that flood control refused, and logs
// a block once, when it starts.
func (s *Server) floodDrop(v flood.Verdict, what string, key string) {
	reason := DropFlood
	if v.Action == flood.DropBlocked {
		reason = DropBlocked
	}
	s.obs.DatagramDropped(reason)
	if v.BlockStart {
		fs := s.flood.Settings()
		s.log.Warn("flood: blocked", zap.String(what, key), zap.Duration("for", fs.BlockFor))
	}
}

// throttle tells a member that flood control dropped its chat: a v2
// member gets throttled with a back-off, a classic member a short notice;
// at most one per second.
func (s *Server) throttle(m *Member, v flood.Verdict, id uint64, now time.Time) {
	last := m.throttledAt.Load()
	if now.UnixNano()-last < int64(time.Second) || !m.throttledAt.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	fs := s.flood.Settings()
	backoff := time.Second
	if v.Action == flood.DropBlocked {
		backoff = fs.BlockFor
	} else if fs.ChatRate > 0 {
		backoff = max(time.Duration(float64(time.Second)/float64(fs.ChatRate)), 50*time.Millisecond)
	}
	if m.Proto == ProtoV2 {
		s.sendV2(m, &wire.Frame{T: wire.FrameThrottled, Room: s.main.name, ID: id, RetryMS: backoff.Milliseconds(), Reason: s.words().throttled})
		return
	}
	s.out.Send(m, []byte(s.words().throttled))
}

// loginRefused records a refused login for the per-IP ban.
func (s *Server) loginRefused(ip netip.Addr) {
	if s.flood.LoginRefused(ip) {
		fs := s.flood.Settings()
		s.log.Warn("flood: login ban", zap.Stringer("ip", ip), zap.Int("refusals", fs.LoginRefusals),
			zap.Duration("for", fs.LoginBanFor))
	}
}
