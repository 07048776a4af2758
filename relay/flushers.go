package relay

import (
	"sync"
	"sync/atomic"
)

// flushers sends the fan-out for a reader that handles its read batches
// itself (where handlers never wait: readLoop). The reader publishes a
// batch's events and kicks; up to max Executor tasks flush meanwhile, each
// until no kick came since it began its last flush. A kick that finds max
// tasks running starts none: each of them looks for it before it ends, so
// no event is left in the journal with nobody to send it.
//
// This is nats-server's split (the read loop processes what it read, the
// write loops send), and the batch loop's (its reader encodes, its sender
// threads send): at room10's limit the relay's Go code cost 0.24 µs per
// delivery with a worker handling each batch the reader handed it (the
// datagram read on one CPU and parsed on another, the lanes, the reader
// sleeping between small reads) against 0.16 with the reader handling, and
// its reads 0.22 against 0.10, as the loop's (docs/BENCHMARKS.md, issue 11
// round thirteen).
type flushers struct {
	exec  Executor
	max   int32
	flush func() // sends what is published (Server.flushBatch)
	task  func() // run, bound once so that Invoke does not allocate

	pending atomic.Bool  // kicked since a task last began a flush
	running atomic.Int32 // tasks counted as running: each checks pending before it ends
	wg      sync.WaitGroup

	ending func() // tests: runs when a task found no kick, before it stops counting itself
}

func newFlushers(exec Executor, limit int, flush func()) *flushers {
	f := &flushers{exec: exec, max: int32(limit), flush: flush}
	f.task = f.run
	return f
}

// kick says events were published: a running task, or one it starts,
// sends them. If the Executor refuses the task, the caller flushes.
func (f *flushers) kick() {
	f.pending.Store(true)
	for {
		n := f.running.Load()
		if n >= f.max {
			return // a running task finds pending before it ends
		}
		if f.running.CompareAndSwap(n, n+1) {
			break
		}
	}
	f.wg.Add(1)
	if f.exec.Invoke(f.task) != nil {
		f.running.Add(-1)
		f.wg.Done()
		f.flush()
	}
}

// run is the task: it flushes while kicks come, then ends, unless a kick
// came after its last look and found it still counted.
func (f *flushers) run() {
	defer f.wg.Done()
	for {
		for f.pending.Swap(false) {
			f.flush()
		}
		if f.ending != nil {
			f.ending()
		}
		f.running.Add(-1)
		if !f.pending.Load() {
			return // a later kick finds this task gone, and starts one
		}
		// A kick came since the last Swap and may have found this task
		// counted: it is this task's, unless max others run (each of them
		// looks again before it ends).
		if f.running.Add(1) > f.max {
			f.running.Add(-1)
			return
		}
	}
}

// idle reports that no task is running.
func (f *flushers) idle() bool { return f.running.Load() == 0 }

// wait returns once every task has ended. Nothing may kick meanwhile.
func (f *flushers) wait() { f.wg.Wait() }
