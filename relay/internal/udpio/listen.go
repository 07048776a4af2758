package udpio

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Listen opens n UDP sockets bound to addr ("host:port"; port 0 picks one
// port for all). With n > 1 they form an SO_REUSEPORT group: the kernel
// spreads senders over the sockets by address hash, so each sender's
// datagrams always reach the same one, in order.
//
// Linux lets any process of the same user join a reuseport group, so a
// second relay started by mistake on the same port would silently share its
// traffic. Listen therefore first binds addr WITHOUT SO_REUSEPORT: if the
// port is taken, by a reuseport group or anything else, that fails with
// EADDRINUSE exactly as a single socket would, and nothing is opened.
func Listen(addr string, n int) ([]*net.UDPConn, error) {
	if n < 1 {
		return nil, fmt.Errorf("udpio: %d sockets: want at least 1", n)
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	probe, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err // the port is taken: say so, as one socket would
	}
	if n == 1 {
		return []*net.UDPConn{probe}, nil
	}
	// The probe proved the port free; the group takes it over. With port 0
	// the group binds the port the probe was given.
	bound := probe.LocalAddr().(*net.UDPAddr)
	ua.Port = bound.Port
	if err := probe.Close(); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: setReusePort}
	conns := make([]*net.UDPConn, 0, n)
	for i := 0; i < n; i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", ua.String())
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, pc.(*net.UDPConn))
	}
	return conns, nil
}

// errNoReusePort is returned by Listen for n > 1 where SO_REUSEPORT is not
// available.
var errNoReusePort = errors.New("udpio: several sockets on one port (SO_REUSEPORT) need Linux")
