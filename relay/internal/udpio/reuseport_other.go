//go:build !linux

package udpio

import "syscall"

func setReusePort(_, _ string, _ syscall.RawConn) error { return errNoReusePort }
