package relay

import (
	"net/netip"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// WaitFanoutIdle returns once no broadcast is queued or being sent, so a
// test knows every count of the broadcasts before has been made.
func WaitFanoutIdle(s *Server) { s.fan.waitIdle() }

// HandOffAlways makes the relay of c hand every datagram to its Executor,
// also a quiet one that its reader would handle itself: for tests that
// hold the executor or the sender, and mean a worker.
func HandOffAlways(c *Config) { c.handOff = true }

// QuietGap is how long a relay must have read nothing before its reader
// handles a small batch itself.
const QuietGap = quietGap

// AdmitWired says whether the core calls admit on login (handlers.go's
// join). Until it does, the tests that log in to see a ban or a lockdown
// refuse skip; the tests that call Admit directly run either way. Set it
// to true in the commit that wires admit in.
const AdmitWired = true

// Admit is Server.admit for name (a display name) from ip, now.
func Admit(s *Server, name string, ip netip.Addr) (code, reason string, ok bool) {
	_, key, err := wire.CanonicalName(name)
	if err != nil {
		panic(err)
	}
	return s.admit(key, ip, s.cfg.Now())
}

// MutedIn is Server.mutedIn for the online member called name, in room
// ("" relay-wide), now.
func MutedIn(s *Server, name, room string) (reason string, muted bool) {
	m := s.reg.ByName(name)
	if m == nil {
		panic("no member " + name)
	}
	var key string
	if room != "" {
		_, key, _ = wire.CanonicalRoom(room)
	}
	return s.mutedIn(m, key, s.cfg.Now())
}
