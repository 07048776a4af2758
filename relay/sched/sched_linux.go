package sched

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Set puts every thread of the process in policy (Batch or Normal), each
// keeping its nice value, and returns how many threads it set. A thread
// started later inherits the policy of the thread that starts it, so once
// Set returns every thread of the process, the Go runtime's later ones
// too, runs in policy. A thread started while the list was read is found
// by the next pass (at most five). Threads the operator put in a
// real-time or idle policy (chrt) keep it. The first error other than a
// thread having ended is returned, after the other threads were set.
func Set(policy string) (int, error) {
	if err := Check(policy); err != nil {
		return 0, fmt.Errorf("sched: %w", err)
	}
	want := uint32(unix.SCHED_NORMAL)
	if policy == Batch {
		want = unix.SCHED_BATCH
	}
	done := map[int]bool{}
	var first error
	for pass := 0; pass < 5; pass++ {
		ts, err := tids(os.Getpid())
		if err != nil {
			return len(done), err
		}
		found := false
		for _, tid := range ts {
			if done[tid] {
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

// Policies returns the scheduling policy of each thread of process pid,
// by thread id (unix.SCHED_NORMAL, unix.SCHED_BATCH, ...), as chrt -p
// shows them; a thread that ended while they were read is left out.
func Policies(pid int) (map[int]uint32, error) {
	ts, err := tids(pid)
	if err != nil {
		return nil, err
	}
	got := make(map[int]uint32, len(ts))
	for _, tid := range ts {
		attr, err := threadAttr(tid)
		if err != nil {
			return nil, err
		}
		if attr != nil {
			got[tid] = attr.Policy
		}
	}
	return got, nil
}

// threadAttr returns thread tid's scheduling attributes, nil if the thread
// has ended.
func threadAttr(tid int) (*unix.SchedAttr, error) {
	attr, err := unix.SchedGetAttr(tid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sched: thread %d: %w", tid, err)
	}
	return attr, nil
}

// tids lists the threads of process pid (/proc/<pid>/task).
func tids(pid int) ([]int, error) {
	es, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil, err
	}
	ts := make([]int, 0, len(es))
	for _, e := range es {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			ts = append(ts, tid)
		}
	}
	return ts, nil
}

// setThread puts thread tid in policy want unless it is in a real-time or
// idle policy; a thread that has ended meanwhile is no error.
func setThread(tid int, want uint32) error {
	attr, err := threadAttr(tid)
	if attr == nil || err != nil {
		return err
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
