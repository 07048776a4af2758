// Package adminsock creates the relay's admin Unix socket safely: mode 0600,
// a stale file left by a dead relay is replaced, a live relay's socket is
// never taken.
package adminsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrInUse reports that another live process answers on the socket path.
var ErrInUse = errors.New("admin socket is in use by a running relay")

// Listen listens on the Unix stream socket path with mode 0600. If path is a
// socket nobody answers on, it is removed first (as wireguard-go's
// UAPIOpen does); if somebody answers, Listen returns ErrInUse; if path is
// anything other than a socket, it is left alone and Listen fails.
func Listen(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", path, ErrInUse)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%s: cannot tell whether a relay is using it: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale admin socket: %w", err)
		}
	}
	// The umask makes the socket 0600 from its creation: a chmod afterwards
	// would leave a window. It is process-wide, so this runs at start-up.
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	return ln, nil
}
