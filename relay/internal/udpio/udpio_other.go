//go:build !linux

package udpio

import (
	"net"
	"net/netip"
	"time"
)

// Conn is a UDP socket prepared for the relay. This portable version does
// not track destination addresses: replies leave from the kernel's choice.
type Conn struct{ uc *net.UDPConn }

type platDest struct{}

// New prepares uc.
func New(uc *net.UDPConn) (*Conn, error) { return &Conn{uc: uc}, nil }

// Read reads one datagram into b; local is always invalid here.
func (c *Conn) Read(b, oob []byte) (n int, from netip.AddrPort, local netip.Addr, err error) {
	n, from, err = c.uc.ReadFromUDPAddrPort(b)
	return n, normalize(from), netip.Addr{}, err
}

// RxDrops is always 0 here: the kernel's drop count is not available.
func (c *Conn) RxDrops() uint32 { return 0 }

// Dest prepares a destination.
func (c *Conn) Dest(to netip.AddrPort, local netip.Addr) Dest {
	return Dest{Addr: normalize(to), Local: local}
}

// Send sends b to d. Without MSG_DONTWAIT it may wait for buffer space.
func (c *Conn) Send(b []byte, d *Dest) error {
	to := d.Addr
	if la, ok := c.uc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil && to.Addr().Is4() {
		to = netip.AddrPortFrom(netip.AddrFrom16(to.Addr().As16()), to.Port())
	}
	_, err := c.uc.WriteToUDPAddrPort(b, to)
	return err
}

// SendAll sends b to every destination in dests and returns how many sends
// failed.
func (c *Conn) SendAll(b []byte, dests []*Dest) (failed int) {
	for _, d := range dests {
		if c.Send(b, d) != nil {
			failed++
		}
	}
	return failed
}

// LocalAddr returns the socket's bound address.
func (c *Conn) LocalAddr() net.Addr { return c.uc.LocalAddr() }

// SetReadDeadline unblocks or bounds Read, as net.Conn's.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// StopReading ends reading: a Read under way, and every later one, returns
// os.ErrDeadlineExceeded (a deadline in the past). The socket still sends.
func (c *Conn) StopReading() { _ = c.uc.SetReadDeadline(time.Unix(1, 0)) }

// Close closes the socket.
func (c *Conn) Close() error { return c.uc.Close() }

// NewOpts is New; batching is not available here.
func NewOpts(uc *net.UDPConn, _ Options) (*Conn, error) { return New(uc) }

// Batching is always false here.
func (c *Conn) Batching() bool { return false }

// Reader reads datagrams from a Conn, one per call here.
type Reader struct{ c *Conn }

// NewReader returns c's reader.
func (c *Conn) NewReader() *Reader { return &Reader{c: c} }

// Read reads one datagram into pkts[0].
func (r *Reader) Read(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	p := &pkts[0]
	var err error
	p.N, p.From, p.Local, err = r.c.Read(p.Buf, nil)
	if err != nil {
		return 0, err
	}
	return 1, nil
}

type batchPlat struct{}

func (p *batchPlat) init(int) {}

// send sends the batch one datagram at a time.
func (b *Batch) send() {
	for i := range b.n {
		if b.c.Send(b.bufs[i][0], b.dests[i]) != nil {
			b.fail(i)
		}
	}
}

// SetBuffers asks for receive and send buffers of n bytes on uc.
func SetBuffers(uc *net.UDPConn, n int) {
	_ = uc.SetReadBuffer(n)
	_ = uc.SetWriteBuffer(n)
}
