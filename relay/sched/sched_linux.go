package sched

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

var policies = map[string]uint32{Batch: unix.SCHED_BATCH, Normal: unix.SCHED_NORMAL}

// Set puts every thread of the process in policy (Batch or Normal), each
// keeping its nice value, and returns how many threads it set. A thread
// started later inherits the policy of the thread that starts it, so once
// Set returns every thread of the process, the Go runtime's later ones
// too, runs in policy. A thread started while the list was read is found
// by the next pass (at most five). Threads the operator put in a
// real-time or idle policy (chrt) keep it. The first error other than a
// thread having ended is returned, after the other threads were set.
func Set(policy string) (int, error) {
	want, ok := policies[policy]
	if !ok {
		return 0, fmt.Errorf("sched: unknown policy %q (want %s or %s)", policy, Batch, Normal)
	}
	done := map[int]bool{}
	var first error
	for pass := 0; pass < 5; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return len(done), err
		}
		found := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			found, done[tid] = true, true
			if err := setThread(tid, want); err != nil && first == nil {
				first = err
			}
		}
		if !found {
			break
		}
	}
	return len(done), first
}

// setThread puts thread tid in policy want unless it is in a real-time or
// idle policy; a thread that has ended meanwhile is no error.
func setThread(tid int, want uint32) error {
	attr, err := unix.SchedGetAttr(tid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sched: thread %d: %w", tid, err)
	}
	if attr.Policy != unix.SCHED_NORMAL && attr.Policy != unix.SCHED_BATCH {
		return nil
	}
	attr.Policy = want
	if err := unix.SchedSetAttr(tid, attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("sched: thread %d: %w", tid, err)
	}
	return nil
}
