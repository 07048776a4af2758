//go:build linux

package main

import (
	"fmt"
	"os"
)

// The durable relays are chatrelay started with --data-dir (README.md, "One
// node, durable"): rooms' history in an embedded JetStream in a directory of
// its own, fresh for each start and removed when the relay stops, so a run
// never reads what an earlier one stored and leaves nothing behind. They
// run beside chatrelay and chatrelay-v2 to show what durability costs on
// the same load (issue 10: room100 sustained, p99 at 20 x 200 msg/s).
const (
	relayDurable   = "chatrelay-durable"    // classic members, --data-dir
	relayV2Durable = "chatrelay-v2-durable" // v2 members, --data-dir
)

// durableRelays are not in allRelays: the ladders of --scenario all keep
// their time budget; --relays names them, and latency (one cheap step) runs
// chatrelay-durable by default.
var durableRelays = []string{relayDurable, relayV2Durable}

// v2Of is the relay --proto v2 (or both) makes of a classic chatrelay entry.
var v2Of = map[string]string{relayClassic: relayV2, relayDurable: relayV2Durable}

// isChatrelay reports whether name runs the chatrelay daemon.
func isChatrelay(name string) bool {
	switch name {
	case relayClassic, relayV2, relayDurable, relayV2Durable:
		return true
	}
	return false
}

// isV2 reports whether name is chatrelay with v2 members.
func isV2(name string) bool { return name == relayV2 || name == relayV2Durable }

// durableArgs returns the --data-dir flag for a start of relay name (none
// unless it is durable) and what removes its directory once the relay has
// stopped.
func (e *env) durableArgs(name string) (args []string, cleanup func(), err error) {
	if name != relayDurable && name != relayV2Durable {
		return nil, func() {}, nil
	}
	dir, err := os.MkdirTemp(e.tmp, fmt.Sprintf("data-%d-", e.starts))
	if err != nil {
		return nil, nil, err
	}
	return []string{"--data-dir", dir}, func() { os.RemoveAll(dir) }, nil
}
