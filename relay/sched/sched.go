// Package sched sets the Linux scheduling policy of every thread of the
// process. The relay daemon runs in SCHED_BATCH unless told otherwise
// (--sched), and relaybench's batch and coalesce reference loops always do,
// so that the relay is measured against the strongest loops we can write.
//
// In SCHED_BATCH a thread that wakes does not preempt the thread running
// on its CPU: it runs when that one's slice ends, or at once on an idle
// CPU. A relay's reader is woken by a datagram that finds it asleep, and
// wakes a worker in turn, which wakes a sender; on a machine whose CPUs
// are busy each wake-up was a context switch, every few datagrams. Waiting
// for the slice, the reader reads what came meanwhile in one call and the
// relay spends its CPU on sending (docs/BENCHMARKS.md, issue 11 round
// eleven). The price is latency when the CPUs are busy: a woken thread may
// wait for up to a slice (a few milliseconds) before it runs.
package sched

import "fmt"

// The policies Set accepts.
const (
	Batch  = "batch"  // SCHED_BATCH
	Normal = "normal" // SCHED_OTHER, the system's default
)

// Check reports an error unless policy is one Set accepts (Batch or
// Normal), on every platform: a configuration that names another is wrong
// everywhere, even where Set does nothing.
func Check(policy string) error {
	if policy != Batch && policy != Normal {
		return fmt.Errorf("%q: want %s or %s", policy, Batch, Normal)
	}
	return nil
}
