package relay

import (
	"net"

	"github.com/chatrelay/chatrelay/relay/internal/udpio"
)

// Listen opens the relay's UDP sockets on addr for ServeGroup: one socket
// (on Linux a reuseport group of one that steers every datagram to it, so
// that each fan-out sender can send from a socket of its own bound to the
// same address), or with readers > 1 an SO_REUSEPORT group of that many
// (Linux only, whose senders share their reader's socket), each
// with a receive and a send buffer of bufBytes (forced beyond the system's
// maximum where the process may, else capped by it; 0 leaves the kernel's
// default).
//
// A port that is already taken fails as one socket would (bind: address
// already in use), also when the holder is another relay's reuseport group,
// which Linux would otherwise let this process join and silently share.
func Listen(addr string, readers, bufBytes int) ([]*net.UDPConn, error) {
	ucs, err := udpio.Listen(addr, readers)
	if err != nil {
		return nil, err
	}
	if bufBytes > 0 {
		for _, uc := range ucs {
			// Bursts arrive faster than any scheduler wakes a reader: a
			// larger receive buffer turns them into latency instead of
			// kernel drops. Errors are not fatal.
			udpio.SetBuffers(uc, bufBytes)
		}
	}
	return ucs, nil
}
