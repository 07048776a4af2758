//go:build !linux

package udpio

import (
	"net"
	"syscall"
)

func setReusePort(_, _ string, _ syscall.RawConn) error { return errNoReusePort }

const canSteer = false

func steerToFirst(*net.UDPConn) error { return errNoReusePort }
