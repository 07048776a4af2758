package main

import (
	"runtime"
	"testing"

	"github.com/chatrelay/chatrelay/relay"
)

// The daemon runs a P per CPU plus one per reader and sender socket,
// unless the operator set GOMAXPROCS, which it then leaves as it is.
func TestDaemonProcsUnlessTheOperatorSetGOMAXPROCS(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })

	procs, adjusted := adjustProcs(2, envMap{}.lookup)
	if want := before + 2 + relay.SenderSockets; !adjusted || procs != want || runtime.GOMAXPROCS(0) != want {
		t.Fatalf("no GOMAXPROCS set: adjustProcs = %d, %v with GOMAXPROCS now %d; want %d, true", procs, adjusted, runtime.GOMAXPROCS(0), want)
	}
	runtime.GOMAXPROCS(before)

	procs, adjusted = adjustProcs(2, envMap{"GOMAXPROCS": "3"}.lookup)
	if adjusted || procs != before || runtime.GOMAXPROCS(0) != before {
		t.Fatalf("GOMAXPROCS set by the operator: adjustProcs = %d, %v with GOMAXPROCS now %d; want %d, false and unchanged", procs, adjusted, runtime.GOMAXPROCS(0), before)
	}
}
