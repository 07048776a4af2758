package relay

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFlushersSendEverythingKicked: producers publish and kick as a reader
// does, from several goroutines (--readers), while tasks flush; once they
// stop, everything published is sent without another kick, at most max
// flushes ever ran at once, and every task ends. Also when the Executor
// refuses some tasks: the kicker flushes itself.
func TestFlushersSendEverythingKicked(t *testing.T) {
	for _, refuse := range []int{0, 50} {
		var (
			published atomic.Int64
			mu        sync.Mutex
			sent      int64 // the most published that a flush has seen, guarded by mu
			now, most int   // flushes running, and the most at once, guarded by mu
		)
		flush := func() {
			upto := published.Load()
			mu.Lock()
			now++
			most = max(most, now)
			mu.Unlock()
			runtime.Gosched() // a flush takes a while: let kicks come meanwhile
			mu.Lock()
			now--
			sent = max(sent, upto)
			mu.Unlock()
		}
		exec := &refusingExec{n: refuse}
		const maxTasks = 3
		f := newFlushers(exec, maxTasks, flush)
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 2000 {
					published.Add(1)
					f.kick()
					if i%16 == 0 {
						runtime.Gosched()
					}
				}
			}()
		}
		wg.Wait()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			done := sent == published.Load()
			mu.Unlock()
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("refusing %d: %d of %d published events sent, and no task left to send the rest", refuse, sent, published.Load())
			}
			time.Sleep(time.Millisecond)
		}
		f.wait()
		exec.wg.Wait()
		// The kickers flush themselves when refused, so only tasks count
		// towards max; allow the kickers' own on top.
		if limit := maxTasks + 4*min(refuse, 1); most > limit {
			t.Errorf("refusing %d: %d flushes at once, want at most %d", refuse, most, limit)
		}
		if n := f.running.Load(); n != 0 {
			t.Errorf("refusing %d: %d tasks still counted as running after wait", refuse, n)
		}
	}
}

// TestFlushersKickAsATaskEnds: a kick that comes as the only task allowed
// has found nothing more to do, and so starts none, is still sent: by that
// task, which looks once more after it stops counting itself.
func TestFlushersKickAsATaskEnds(t *testing.T) {
	var published, sent atomic.Int64
	exec := &refusingExec{}
	f := newFlushers(exec, 1, func() { sent.Store(published.Load()) })
	once := sync.Once{}
	f.ending = func() {
		once.Do(func() {
			published.Add(1) // a second batch, handled while the task ends
			f.kick()
		})
	}
	published.Add(1)
	f.kick()
	f.wait()
	exec.wg.Wait()
	if sent.Load() != 2 {
		t.Fatalf("%d of 2 published batches sent once every task ended", sent.Load())
	}
}

// TestRunningCountsSendingTasks: chatrelay_pool_running (Server.Running)
// counts the tasks sending a reader's fan-out, not only the dispatcher's
// workers, which rooms in memory never start: a task held while it runs
// is one, and none once it ends.
func TestRunningCountsSendingTasks(t *testing.T) {
	exec := &gatedExec{gate: make(chan struct{})}
	s, err := New(Config{Executor: exec, Flood: FloodOff()})
	if err != nil {
		t.Fatal(err)
	}
	s.send.kick()
	if n := s.Running(); n != 1 {
		t.Errorf("one sending task held: Running %d, want 1", n)
	}
	close(exec.gate)
	exec.wg.Wait()
	if n := s.Running(); n != 0 {
		t.Errorf("the task ended: Running %d, want 0", n)
	}
}
