//go:build linux

package udpio

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

func setReusePort(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// canSteer: steerToFirst may work here.
const canSteer = true

// steerToFirst attaches to uc's reuseport group a program that hands every
// datagram to the group's first socket (SO_ATTACH_REUSEPORT_CBPF,
// "return 0"): sockets that join the group later (a Conn's senders) then
// receive nothing, and neither would another process of the same user that
// joined it.
func steerToFirst(uc *net.UDPConn) error {
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}); err != nil {
		return err
	}
	return serr
}
