// Package pool provides a bounded, non-blocking goroutine pool.
//
// A Pool runs one function over arguments handed to Invoke on at most
// Cap worker goroutines. Invoke never waits for a worker: when all of them
// are busy it fails at once with ErrOverloaded, so a caller such as a
// socket reader can shed load instead of stalling. The package knows
// nothing of what the tasks do; it wraps github.com/panjf2000/ants/v2.
package pool

import (
	"errors"
	"time"

	"github.com/panjf2000/ants/v2"
)

var (
	// ErrOverloaded is returned by Invoke when every worker is busy.
	// The argument was not accepted and the function will not run for it.
	ErrOverloaded = errors.New("pool: overloaded")

	// ErrClosed is returned by Invoke after Close has been called, and by
	// Close when the pool is already closed.
	ErrClosed = errors.New("pool: closed")

	// ErrTimeout is returned by Close when workers were still running when
	// the timeout expired. The pool is closed all the same: Invoke fails
	// with ErrClosed and the remaining workers exit when their task returns.
	ErrTimeout = errors.New("pool: close timed out")
)

// idleExpiry is how long an idle worker lives before it is reaped. ants'
// default of 1s makes bursty traffic create and reap goroutines over and
// over; a minute keeps a warm set of workers between bursts.
const idleExpiry = time.Minute

// Options configures a Pool. The zero value is valid.
type Options struct {
	// OnPanic, if set, is called with the recovered value when the task
	// function panics. It runs on the worker goroutine before the worker is
	// returned to the pool, so after Close returns nil no call is in
	// progress. The worker survives and the pool keeps accepting tasks.
	// It must not panic itself.
	//
	// Default nil: the panic is not recovered by this package; ants recovers
	// it, logs it with a stack trace to stderr, and the worker exits (the
	// pool starts a new one when needed).
	OnPanic func(v any)
}

// Pool runs a fixed function over submitted arguments on a bounded set of
// worker goroutines. All methods are safe for concurrent use.
type Pool[T any] struct {
	p *ants.PoolWithFuncGeneric[T]
}

// New returns a pool of at most size workers running fn. size must be
// positive. Workers start on demand and exit after a minute idle.
func New[T any](size int, fn func(T), opts Options) (*Pool[T], error) {
	if size <= 0 {
		return nil, errors.New("pool: size must be positive")
	}
	if fn == nil {
		return nil, errors.New("pool: nil function")
	}
	if onPanic := opts.OnPanic; onPanic != nil {
		inner := fn
		// Recover here rather than through ants.WithPanicHandler: ants calls
		// its handler from the exiting worker's defer, after the worker has
		// been counted out, so a handler could still be running after
		// ReleaseTimeout reported that all workers were done.
		fn = func(arg T) {
			defer func() {
				if v := recover(); v != nil {
					onPanic(v)
				}
			}()
			inner(arg)
		}
	}
	p, err := ants.NewPoolWithFuncGeneric(size, fn,
		ants.WithNonblocking(true),
		ants.WithExpiryDuration(idleExpiry),
	)
	if err != nil {
		return nil, err
	}
	return &Pool[T]{p: p}, nil
}

// Invoke hands arg to an idle worker, starting one if fewer than Cap are
// alive, and returns without waiting for fn to run. It never blocks: it
// returns ErrOverloaded if all Cap workers are busy and ErrClosed once
// Close has been called. On error fn will not run for arg.
func (p *Pool[T]) Invoke(arg T) error {
	switch err := p.p.Invoke(arg); {
	case err == nil:
		return nil
	case errors.Is(err, ants.ErrPoolOverload):
		return ErrOverloaded
	case errors.Is(err, ants.ErrPoolClosed):
		return ErrClosed
	default:
		return err
	}
}

// Running reports the number of worker goroutines alive, busy or idle.
// Idle workers count until they expire, so Running is not the number of
// tasks in progress.
func (p *Pool[T]) Running() int { return p.p.Running() }

// Cap reports the maximum number of workers.
func (p *Pool[T]) Cap() int { return p.p.Cap() }

// Free reports Cap minus Running: how many more workers may be started.
// Idle workers are not counted as free, so Free can be 0 while Invoke
// still succeeds.
func (p *Pool[T]) Free() int { return p.p.Free() }

// Close stops the pool and waits up to timeout for the workers to finish
// their current task and exit. Tasks are not interrupted. After Close
// returns nil, every worker goroutine and the pool's own background
// goroutines have exited, provided no Invoke call ran concurrently with
// Close. It returns ErrTimeout if workers were still running at the
// deadline and ErrClosed if the pool was already closed.
func (p *Pool[T]) Close(timeout time.Duration) error {
	switch err := p.p.ReleaseTimeout(timeout); {
	case err == nil:
		return nil
	case errors.Is(err, ants.ErrTimeout):
		return ErrTimeout
	case errors.Is(err, ants.ErrPoolClosed):
		return ErrClosed
	default:
		return err
	}
}
