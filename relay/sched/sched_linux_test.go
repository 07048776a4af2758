package sched_test

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/chatrelay/chatrelay/relay/sched"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// threadPolicies returns the policy of every thread of this process.
func threadPolicies(t *testing.T) map[int]uint32 {
	t.Helper()
	got, err := sched.Policies(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// policyOf returns the calling thread's policy.
func policyOf(t *testing.T) uint32 {
	attr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		t.Error(err)
		return 0
	}
	return attr.Policy
}

// newThreadPolicies starts n goroutines locked to threads of their own,
// more than there are threads now, so that the runtime must start new
// ones, and returns the policy each thread reports; the threads end
// with their goroutines.
func newThreadPolicies(t *testing.T, n int) []uint32 {
	t.Helper()
	got := make(chan uint32)
	release := make(chan struct{})
	for range n {
		go func() {
			// Locked when it returns: the thread ends with the goroutine.
			runtime.LockOSThread()
			got <- policyOf(t)
			<-release
		}()
	}
	var ps []uint32
	for range n {
		ps = append(ps, <-got)
	}
	close(release)
	return ps
}

// After Set(Batch) every thread, and every thread the runtime starts
// later, is in SCHED_BATCH (what `chrt -p` shows for the relay's threads);
// Set(Normal) puts them all back.
func TestSetCoversEveryThreadAndTheOnesStartedLater(t *testing.T) {
	t.Cleanup(func() { _, _ = sched.Set(sched.Normal) })
	n, err := sched.Set(sched.Batch)
	if err != nil {
		t.Fatal(err)
	}
	before := threadPolicies(t)
	if n < len(before) {
		t.Errorf("Set reports %d threads set; the process has at least %d", n, len(before))
	}
	for tid, p := range before {
		if p != unix.SCHED_BATCH {
			t.Errorf("after Set(batch): thread %d has policy %d, want SCHED_BATCH (%d)", tid, p, unix.SCHED_BATCH)
		}
	}
	for i, p := range newThreadPolicies(t, len(before)+2) {
		if p != unix.SCHED_BATCH {
			t.Errorf("a thread started after Set(batch) (%d of them) has policy %d, want SCHED_BATCH", i, p)
		}
	}

	if _, err := sched.Set(sched.Normal); err != nil {
		t.Fatal(err)
	}
	for tid, p := range threadPolicies(t) {
		if p != unix.SCHED_NORMAL {
			t.Errorf("after Set(normal): thread %d has policy %d, want SCHED_OTHER (0)", tid, p)
		}
	}
}

// An unknown policy is refused and changes nothing.
func TestSetRefusesAnUnknownPolicy(t *testing.T) {
	if _, err := sched.Set("fifo"); err == nil || !strings.Contains(err.Error(), `"fifo"`) {
		t.Fatalf("Set(fifo) = %v, want an error naming it", err)
	}
	for tid, p := range threadPolicies(t) {
		if p != unix.SCHED_NORMAL {
			t.Errorf("thread %d has policy %d after a refused Set, want SCHED_OTHER", tid, p)
		}
	}
}
