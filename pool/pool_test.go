package pool_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chatrelay/chatrelay/pool"
)

// The relay submits closures through this interface.
var _ interface{ Invoke(task func()) error } = (*pool.Pool[func()])(nil)

func TestMain(m *testing.M) {
	// Importing ants starts its default pool's purgeStaleWorkers and
	// ticktock goroutines. IgnoreCurrent skips exactly those (they exist
	// before any test runs) while still catching the same goroutines of a
	// pool a test forgot to Close, which IgnoreAnyFunction would hide.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// wait bounds how long a test waits for something that should happen at once.
const wait = 5 * time.Second

func newFuncPool(t *testing.T, size int, opts pool.Options) *pool.Pool[func()] {
	t.Helper()
	p, err := pool.New(size, func(f func()) { f() }, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func recv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// invokeEventually retries while the pool is overloaded: a worker that just
// finished a task is handed back to the pool shortly after the task returns.
func invokeEventually(t *testing.T, p *pool.Pool[func()], f func()) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := p.Invoke(f)
		if err == nil {
			return
		}
		if !errors.Is(err, pool.ErrOverloaded) || time.Now().After(deadline) {
			t.Fatalf("Invoke: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// block fills n workers with tasks that wait on release, and returns once
// all n are running.
func block(t *testing.T, p *pool.Pool[func()], n int, release <-chan struct{}) {
	t.Helper()
	started := make(chan struct{})
	for i := range n {
		if err := p.Invoke(func() { started <- struct{}{}; <-release }); err != nil {
			t.Fatalf("Invoke %d: %v", i, err)
		}
	}
	for range n {
		recv(t, started, "blocked task to start")
	}
}

func TestNewRejectsBadArguments(t *testing.T) {
	if _, err := pool.New(0, func(int) {}, pool.Options{}); err == nil {
		t.Error("New(0, …) succeeded, want error")
	}
	if _, err := pool.New[int](1, nil, pool.Options{}); err == nil {
		t.Error("New(1, nil) succeeded, want error")
	}
}

func TestInvokeRunsTaskWithArgument(t *testing.T) {
	got := make(chan int, 1)
	p, err := pool.New(1, func(v int) { got <- v }, pool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(wait)
	if err := p.Invoke(42); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if v := recv(t, got, "task"); v != 42 {
		t.Errorf("task got %d, want 42", v)
	}
	if c := p.Cap(); c != 1 {
		t.Errorf("Cap = %d, want 1", c)
	}
}

func TestInvokeOverloadedDoesNotBlock(t *testing.T) {
	p := newFuncPool(t, 2, pool.Options{})
	release := make(chan struct{})
	block(t, p, 2, release)

	if r, f := p.Running(), p.Free(); r != 2 || f != 0 {
		t.Errorf("Running, Free = %d, %d; want 2, 0", r, f)
	}

	ran := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() { errc <- p.Invoke(func() { ran <- struct{}{} }) }()
	if err := recv(t, errc, "third Invoke to return"); !errors.Is(err, pool.ErrOverloaded) {
		t.Fatalf("third Invoke = %v, want ErrOverloaded", err)
	}

	close(release)
	// Capacity comes back once the blocked tasks return.
	invokeEventually(t, p, func() { ran <- struct{}{} })
	recv(t, ran, "task after overload")
	select {
	case <-ran:
		t.Error("rejected task ran")
	default:
	}
	if err := p.Close(wait); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestPanicIsRecoveredAndReported(t *testing.T) {
	panics := make(chan any, 1)
	p := newFuncPool(t, 1, pool.Options{OnPanic: func(v any) { panics <- v }})

	if err := p.Invoke(func() { panic("boom") }); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if v := recv(t, panics, "OnPanic"); v != "boom" {
		t.Errorf("OnPanic got %v, want boom", v)
	}

	// The pool keeps working, repeatedly, on its single worker.
	ran := make(chan int, 1)
	for i := range 3 {
		invokeEventually(t, p, func() { ran <- i })
		if got := recv(t, ran, "task after panic"); got != i {
			t.Errorf("task %d reported %d", i, got)
		}
	}
	if err := p.Close(wait); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case v := <-panics:
		t.Errorf("unexpected second panic: %v", v)
	default:
	}
}

func TestCloseWaitsForWorkers(t *testing.T) {
	const n = 4
	p := newFuncPool(t, n, pool.Options{})
	release := make(chan struct{})
	var finished atomic.Int32
	started := make(chan struct{})
	for i := range n {
		if err := p.Invoke(func() {
			started <- struct{}{}
			<-release
			finished.Add(1)
		}); err != nil {
			t.Fatalf("Invoke %d: %v", i, err)
		}
	}
	for range n {
		recv(t, started, "task to start")
	}

	closed := make(chan error, 1)
	go func() { closed <- p.Close(wait) }()
	close(release)
	if err := recv(t, closed, "Close"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := finished.Load(); got != n {
		t.Errorf("Close returned with %d of %d tasks finished", got, n)
	}
	if r := p.Running(); r != 0 {
		t.Errorf("Running after Close = %d, want 0", r)
	}
	if err := p.Invoke(func() { t.Error("task ran after Close") }); !errors.Is(err, pool.ErrClosed) {
		t.Errorf("Invoke after Close = %v, want ErrClosed", err)
	}
	if err := p.Close(wait); !errors.Is(err, pool.ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}

func TestCloseTimesOut(t *testing.T) {
	p := newFuncPool(t, 1, pool.Options{})
	release := make(chan struct{})
	block(t, p, 1, release)

	if err := p.Close(time.Millisecond); !errors.Is(err, pool.ErrTimeout) {
		t.Errorf("Close with a busy worker = %v, want ErrTimeout", err)
	}
	if err := p.Invoke(func() {}); !errors.Is(err, pool.ErrClosed) {
		t.Errorf("Invoke after timed-out Close = %v, want ErrClosed", err)
	}
	// The worker exits once its task returns; goleak in TestMain checks it.
	close(release)
}

func TestConcurrentInvoke(t *testing.T) {
	const size, callers, per = 4, 8, 200
	var ran, rejected atomic.Int64
	p, err := pool.New(size, func(int) { ran.Add(1) }, pool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for j := range per {
				switch err := p.Invoke(j); {
				case err == nil:
				case errors.Is(err, pool.ErrOverloaded):
					rejected.Add(1)
				default:
					t.Errorf("Invoke: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := p.Close(wait); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := ran.Load() + rejected.Load(); got != callers*per {
		t.Errorf("ran %d + rejected %d = %d, want %d", ran.Load(), rejected.Load(), got, callers*per)
	}
}
