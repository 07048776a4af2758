//go:build !linux

package sched

import "fmt"

// Set does nothing where there is no SCHED_BATCH: the process keeps the
// system's scheduling. It still refuses an unknown policy.
func Set(policy string) (int, error) {
	if policy != Batch && policy != Normal {
		return 0, fmt.Errorf("sched: unknown policy %q (want %s or %s)", policy, Batch, Normal)
	}
	return 0, nil
}
