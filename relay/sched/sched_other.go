//go:build !linux

package sched

import "fmt"

// Set does nothing where there is no SCHED_BATCH: the process keeps the
// system's scheduling. It still refuses an unknown policy (Check).
func Set(policy string) (int, error) {
	if err := Check(policy); err != nil {
		return 0, fmt.Errorf("sched: %w", err)
	}
	return 0, nil
}

// Policies reports nothing where there is no SCHED_BATCH.
func Policies(int) (map[int]uint32, error) { return nil, nil }
