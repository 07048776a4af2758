package relay

import (
	"fmt"
	"net"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"
)

// adminPeer names who is at the other end of an admin connection, for the
// record of a ban, a mute or a lockdown: the user of the peer process
// (SO_PEERCRED), or "admin" when the kernel does not say.
func adminPeer(c net.Conn) string {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return "admin"
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return "admin"
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return "admin"
	}
	uid := strconv.FormatUint(uint64(cred.Uid), 10)
	if u, err := user.LookupId(uid); err == nil && u.Username != "" {
		return u.Username
	}
	return fmt.Sprintf("uid %s", uid)
}
