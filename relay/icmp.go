package relay

import (
	"net/netip"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
)

// ICMP port-unreachable tells the relay that a classic client's port is
// gone (classic clients cannot heartbeat). But anyone who knows a member's
// address can forge ICMP, so a member is removed only after icmpStrikes
// errors spread over at least icmpSpan, with nothing received from it in
// between.
const (
	icmpStrikes = 3
	icmpSpan    = 10 * time.Second
)

// icmpState counts port-unreachable errors for one classic member.
type icmpState struct {
	mu    sync.Mutex // protects the fields below
	count int
	first time.Time
}

// strike records one error at now; it reports whether the member should go.
func (st *icmpState) strike(lastSeen, now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.count == 0 || lastSeen.After(st.first) {
		// First error, or the member spoke since: start over.
		st.count, st.first = 0, now
	}
	st.count++
	return st.count >= icmpStrikes && now.Sub(st.first) >= icmpSpan
}

// drainICMP reads the socket's error queue. It runs on a read error (the
// kernel reports a queued ICMP error there first) and on every sweep, so
// the queue, which shares the receive buffer, never fills.
func (s *Server) drainICMP() {
	now := s.cfg.Now()
	for _, c := range s.conns {
		s.drainICMPOf(c, now)
	}
}

func (s *Server) drainICMPOf(c *udpio.Conn, now time.Time) {
	c.DrainErrors(func(dst netip.AddrPort, errno syscall.Errno) {
		if errno != syscall.ECONNREFUSED {
			return // host or network unreachable may pass; a closed port does not
		}
		s.obs.icmpErrors.Add(1)
		m := s.reg.Lookup(dst)
		if m == nil || m.Proto != ProtoClassic {
			return // v2 sessions heartbeat; silence evicts them
		}
		if m.icmp.strike(m.LastSeen(), now) {
			s.bg.Add(1)
			go func() { // off the reader: a broadcast costs a send per member
				defer s.bg.Done()
				s.log.Info("classic client's port is gone", zap.String("name", m.Name), zap.Stringer("addr", m.Addr()))
				s.evict(m, now)
			}()
		}
	})
}
