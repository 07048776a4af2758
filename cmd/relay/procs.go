package main

import (
	"runtime"

	"github.com/chatrelay/chatrelay/relay"
)

// procsFor is the GOMAXPROCS the daemon runs with on cpus CPUs (the Go
// runtime's default) and readers readers: one P per CPU, plus one for each
// thread that spends its time in system calls while other work waits,
// each reader (recvmmsg) and each of the fan-out's sender sockets
// (sendmmsg). A goroutine coming back from a system call needs a P to go
// on. With one P per CPU a sender in a long sendmmsg holds its P until the
// runtime's sysmon takes it back (20 µs to 10 ms later), and the reader or
// the handler that would run meanwhile waits: in room10 at its limit,
// 11 Ps on 2 CPUs delivered 2-10% more than 2, for the same CPU per
// delivery (docs/BENCHMARKS.md, issue 11 round nine). relaybench's batch
// and coalesce references run so too (their sender threads + 2).
func procsFor(cpus, readers int) int { return cpus + readers + relay.SenderSockets }

// tuneProcs says that runEnv adjusts GOMAXPROCS (adjustProcs) before it
// serves: main sets it; tests, which run relays in their own process, do
// not.
var tuneProcs bool

// adjustProcs sets GOMAXPROCS to procsFor(GOMAXPROCS, readers) unless the
// GOMAXPROCS environment variable (looked up with env) is set: then the
// operator chose, and the runtime applied it. It returns the Ps in force
// and whether it set them.
func adjustProcs(readers int, env envFunc) (procs int, adjusted bool) {
	procs = runtime.GOMAXPROCS(0)
	if v, ok := env("GOMAXPROCS"); ok && v != "" {
		return procs, false
	}
	procs = procsFor(procs, readers)
	runtime.GOMAXPROCS(procs)
	return procs, true
}
