package client

import (
	"math/rand/v2"
	"time"
)

// backoff is a retry schedule: first, doubling up to max, each wait
// jittered by up to a quarter so that many clients do not retry in step.
type backoff struct {
	first, max time.Duration
	cur        time.Duration
}

// next returns the wait before the next attempt and doubles the one after.
func (b *backoff) next(r *rand.Rand) time.Duration {
	if b.cur == 0 {
		b.cur = b.first
	}
	d := b.cur
	b.cur = min(b.cur*2, b.max)
	if q := int64(d / 4); q > 0 && r != nil {
		d += time.Duration(r.Int64N(q))
	}
	return d
}

// reset starts the schedule over.
func (b *backoff) reset() { b.cur = 0 }
