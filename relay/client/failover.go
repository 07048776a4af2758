package client

import (
	"net"
	"time"
)

// Several relay addresses: Dial logs in at the first that answers, and a
// member whose relay falls silent moves on to the next one, round robin,
// and resumes its session there (see the package documentation). The
// handshakes of handshake.go are unchanged; what changes is where they go.

// relayAddr is one relay address: as given in Config, and resolved.
type relayAddr struct {
	name string
	udp  *net.UDPAddr
}

// failover is the loop's bookkeeping of the addresses it left.
type failover struct {
	tried  int     // addresses given up since Dial began (dialing) or since the last welcome
	silent bool    // dialing: an address stayed silent, not only refused the connection
	moved  bool    // moved to another address since the last welcome
	round  backoff // the wait before the next round once every address was given up
}

// multi reports whether the client has more than one relay address: only
// then does it move between them after login.
func (c *Client) multi() bool { return len(c.relays) > 1 }

// addrPatience is how long a handshake at one address may go unanswered
// (with at least cfg.HelloSilence hellos or resumes sent) before the client
// gives that address up.
func (c *Client) addrPatience() time.Duration {
	return time.Duration(c.cfg.HelloSilence) * c.cfg.HelloEvery
}

// giveUpAddr leaves the relay in use, which did not answer: it stayed
// silent, or refused the connection (refused: an ICMP port unreachable).
// While Dial waits, the next address not tried yet is tried, and when none
// is left Dial fails (ErrNoAnswer if an address was silent, else
// ErrUnreachable). After login the client fails over to the next address,
// round robin; once every address was given up since the last welcome it
// waits a round backoff (1 s doubling to 10 s) before the next handshake.
func (c *Client) giveUpAddr(now time.Time, refused bool) {
	if !refused {
		c.fo.silent = true
	}
	c.fo.tried++
	if c.dialing {
		if c.fo.tried >= len(c.relays) {
			if c.fo.silent {
				c.end(ErrNoAnswer)
			} else {
				c.end(ErrUnreachable)
			}
			return
		}
		if !c.moveTo(c.cur+1, now) {
			c.giveUpAddr(now, true) // no socket for it: as good as refused
		}
		return
	}
	var wait time.Duration
	if c.fo.tried >= len(c.relays) {
		c.fo.tried = 0
		wait = c.fo.round.next(c.cfg.Rand)
	}
	member := c.st == stMember
	if member {
		c.startResume("") // EventFailover says it
	}
	prev := c.relays[c.cur].name
	moved := c.moveTo((c.cur+1)%len(c.relays), now)
	c.hs.next = now.Add(wait)
	if !moved {
		// No socket for it: this address again, another round.
		if member {
			c.emit(Event{Type: EventReconnecting, Reason: "no answer from the relay"})
		}
		return
	}
	c.fo.moved = true
	c.stats.failovers.Add(1)
	c.emit(Event{Type: EventFailover, PrevAddr: prev, Addr: c.relays[c.cur].name})
}

// moveTo makes relays[i] the relay in use: a new socket connected to it,
// no cookie (cookies are per address), and the handshake under way starts
// over there, at once. If no socket can be opened it reports false and the
// handshake starts over at the relay in use.
func (c *Client) moveTo(i int, now time.Time) bool {
	c.hs.bo.reset()
	c.hs.first, c.hs.next, c.hs.sent, c.hs.answered = now, now, 0, false
	s, err := openSocket(c.relays[i].udp, c.sock.gen+1, c.in, c.stop)
	if err != nil {
		return false
	}
	c.sock.close()
	c.sock, c.cur = s, i
	c.at.Store(int32(i))
	c.cookie = ""
	return true
}

// handshakeSpent reports whether the handshake at the relay in use has had
// its chance: no answer to cfg.HelloSilence hellos or resumes over
// addrPatience, or maxDialTries of them without a welcome.
func (c *Client) handshakeSpent(now time.Time) bool {
	if c.hs.sent >= maxDialTries {
		return true
	}
	return !c.hs.answered && c.hs.sent >= c.cfg.HelloSilence && now.Sub(c.hs.first) >= c.addrPatience()
}
