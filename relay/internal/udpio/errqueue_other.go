//go:build !linux

package udpio

import (
	"errors"
	"net/netip"
	"syscall"
)

// EnableRecvErr is not supported on this platform: it returns
// errors.ErrUnsupported, and the relay learns that a classic client is
// gone only from its idle timeout.
func (c *Conn) EnableRecvErr() error { return errors.ErrUnsupported }

// DrainErrors finds nothing on this platform; it returns 0.
func (c *Conn) DrainErrors(fn func(dst netip.AddrPort, errno syscall.Errno)) int { return 0 }
