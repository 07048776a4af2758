package udpio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
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
//
// With n == 1 the socket is, on Linux, a reuseport group of one with a
// program that steers every datagram to it, so that a Conn can
// send from sockets of its own in the group.
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
	if n == 1 && !canSteer {
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
	if n > 1 {
		return conns, nil
	}
	// One socket: a group of one whose datagrams a program steers all to
	// it, so that a Conn made from it can give each sender a socket of
	// its own, bound to the same address (replies leave from the address
	// members send to) without taking any datagram: the kernel then counts
	// each sender's memory on its own socket instead of making every
	// sender update one counter (docs/BENCHMARKS.md, issue 11 round six).
	if steerToFirst(conns[0]) == nil {
		steered.Store(conns[0], struct{}{})
		return conns, nil
	}
	conns[0].Close() // unsteered, a sender's socket would take a share of the datagrams
	uc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	return []*net.UDPConn{uc}, nil
}

// steered holds the sockets Listen made a steered group of one: a Conn
// made from one (NewOpts) gives each of its senders a socket of its own in
// the group.
var steered sync.Map // *net.UDPConn -> struct{}

// errNoReusePort is returned by Listen for n > 1 where SO_REUSEPORT is not
// available.
var errNoReusePort = errors.New("udpio: several sockets on one port (SO_REUSEPORT) need Linux")
