package client

import (
	"errors"
	"net"
	"syscall"
)

// maxIncoming bounds a datagram read from the relay (it sends at most
// --send-budget bytes, 1,200 by default).
const maxIncoming = 64 << 10

// inbound is one datagram, or an ECONNREFUSED, from a socket's reader.
type inbound struct {
	gen  int // the socket generation it came from
	data []byte
	err  error
}

// socket is one connected UDP socket to the relay and its reader.
type socket struct {
	gen     int
	conn    *net.UDPConn
	closing chan struct{} // closed by close: the reader stops handing over
	done    chan struct{} // closed when the reader returns
}

// openSocket dials raddr from a new local port and starts its reader,
// which hands datagrams to in until the socket is closed or stop closes.
func openSocket(raddr *net.UDPAddr, gen int, in chan<- inbound, stop <-chan struct{}) (*socket, error) {
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(1 << 20) // repair bursts; best effort
	s := &socket{gen: gen, conn: conn, closing: make(chan struct{}), done: make(chan struct{})}
	go s.read(in, stop)
	return s, nil
}

func (s *socket) read(in chan<- inbound, stop <-chan struct{}) {
	defer close(s.done)
	buf := make([]byte, maxIncoming)
	for {
		n, err := s.conn.Read(buf)
		var p inbound
		switch {
		case err == nil:
			p = inbound{gen: s.gen, data: append([]byte(nil), buf[:n]...)}
		case errors.Is(err, net.ErrClosed):
			return
		case errors.Is(err, syscall.ECONNREFUSED):
			p = inbound{gen: s.gen, err: ErrUnreachable}
		default:
			continue // transient (e.g. ENOBUFS); UDP loses datagrams anyway
		}
		select {
		case in <- p:
		case <-stop:
			return
		case <-s.closing:
			return
		}
	}
}

// write sends one datagram. Errors are not fatal: ECONNREFUSED from a
// relay that is restarting, for instance, is retried like any loss.
func (s *socket) write(b []byte) error {
	_, err := s.conn.Write(b)
	return err
}

// close closes the socket and waits for its reader. The loop calls it
// (Rebind, failover) while it does not read in, so the reader never waits
// on a full in to return.
func (s *socket) close() {
	close(s.closing)
	s.conn.Close()
	<-s.done
}
