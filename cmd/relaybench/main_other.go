//go:build !linux

// Command relaybench is Linux-only (recvmmsg, epoll, /proc).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "relaybench: Linux only")
	os.Exit(1)
}
