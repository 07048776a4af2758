// Package udpio is the relay's UDP socket: it reads datagrams together with
// the local address they were sent to, and sends without ever blocking.
//
// On a wildcard listen address a multi-homed host has several local
// addresses; a client with a connected socket accepts only replies that come
// from the address it sent to. Conn therefore asks the kernel for each
// datagram's destination (IP_PKTINFO / IPV6_PKTINFO) and sends replies with
// that address as their source.
package udpio

import (
	"errors"
	"net"
	"net/netip"
)

// ErrQueuedErrors is returned by Read when the socket reports an error
// queued (IP_RECVERR) and no datagram: the caller drains the queue
// (DrainErrors) and reads again. Only Linux returns it.
var ErrQueuedErrors = errors.New("udpio: errors queued on the socket")

// OOBSize is the control-message buffer a Read needs for the packet info.
const OOBSize = 128

// Dest is a prepared destination: the peer's address plus whatever the
// platform needs to send to it quickly (a cached sockaddr, the source-address
// control message). Build it once per member with Conn.Dest and reuse it.
type Dest struct {
	Addr  netip.AddrPort // the peer, IPv4 unmapped
	Local netip.Addr     // the source address replies use; invalid means "kernel's choice"
	plat  platDest
}

// normalize unmaps IPv4-mapped IPv6 addresses, so that one peer has one key
// whether the socket is udp4 or dual-stack.
func normalize(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// isWildcard reports whether the socket is bound to an unspecified address.
func isWildcard(uc *net.UDPConn) bool {
	la, ok := uc.LocalAddr().(*net.UDPAddr)
	return ok && (la.IP == nil || la.IP.IsUnspecified())
}

// Options configure a Conn.
type Options struct {
	// Batch reads and writes many datagrams per system call where the
	// platform can (recvmmsg and sendmmsg on Linux, through x/net's
	// ReadBatch and WriteBatch); elsewhere, or false, one per call.
	Batch bool
}

// Packet is one datagram a Reader read.
type Packet struct {
	Buf   []byte         // where the datagram goes; set by the caller before Read
	N     int            // its length
	From  netip.AddrPort // the sender, IPv4 unmapped
	Local netip.Addr     // the address it was sent to on a wildcard socket; else invalid
}

// ReadBatch is how many datagrams a Reader returns at most from one Read.
const ReadBatch = 64
