package relay

import (
	"bytes"
	"errors"
	"sort"
	"sync"
	"time"
)

// memOperator is the OperatorStore of NewMemoryOperatorStore: a map, the
// revision of each record's deletion, and a revision counter. Each
// watcher has its own queue and goroutine, so that a Put never waits for
// a watcher's fn.
type memOperator struct {
	mu       sync.Mutex // protects the fields below; taken before memWatch.mu
	recs     map[memKey]OperatorRecord
	deleted  map[memKey]uint64 // the revision of each record's last deletion (one per key ever deleted)
	rev      uint64
	watchers map[*memWatch]struct{}
}

func newMemOperator() *memOperator {
	return &memOperator{
		recs:     make(map[memKey]OperatorRecord),
		deleted:  make(map[memKey]uint64),
		watchers: make(map[*memWatch]struct{}),
	}
}

// memKey names a record.
type memKey struct{ kind, key string }

// memChange is one change queued for a watcher.
type memChange struct {
	rec     OperatorRecord
	deleted bool
}

// memWatch is one Watch: its queue and the goroutine that drains it.
type memWatch struct {
	mu    sync.Mutex // protects queue; leaf
	queue []memChange
	wake  chan struct{} // one token: the queue has grown
	stop  chan struct{} // closed by stop
	done  chan struct{} // closed when the goroutine returns
}

var errBadRecord = errors.New("relay: an operator record needs a kind and a key")

func (o *memOperator) Load() ([]OperatorRecord, uint64, error) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]OperatorRecord, 0, len(o.recs))
	for _, r := range o.recs {
		if !expired(r.Expires, now) {
			r.Value = bytes.Clone(r.Value)
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rev < out[j].Rev })
	return out, o.rev, nil
}

func (o *memOperator) Put(r OperatorRecord) (uint64, error) {
	if r.Kind == "" || r.Key == "" {
		return 0, errBadRecord
	}
	r.Value = bytes.Clone(r.Value) // the caller may reuse its buffer
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rev++
	r.Rev = o.rev
	o.recs[memKey{r.Kind, r.Key}] = r
	delete(o.deleted, memKey{r.Kind, r.Key})
	o.notifyLocked(memChange{rec: r})
	return r.Rev, nil
}

func (o *memOperator) Delete(kind, key string) (uint64, error) {
	if kind == "" || key == "" {
		return 0, errBadRecord
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rev++
	delete(o.recs, memKey{kind, key})
	o.deleted[memKey{kind, key}] = o.rev
	o.notifyLocked(memChange{rec: OperatorRecord{Kind: kind, Key: key, Rev: o.rev}, deleted: true})
	return o.rev, nil
}

// notifyLocked queues c for every watcher. o.mu must be held, so that
// every watcher sees the changes in revision order.
func (o *memOperator) notifyLocked(c memChange) {
	for w := range o.watchers {
		w.push(c)
	}
}

// Watch gives the latest change of each record after after, then every
// change.
func (o *memOperator) Watch(after uint64, fn func(r OperatorRecord, deleted bool)) (func(), error) {
	w := &memWatch{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	o.mu.Lock()
	var since []memChange
	for _, r := range o.recs {
		if r.Rev > after {
			since = append(since, memChange{rec: r})
		}
	}
	for k, rev := range o.deleted {
		if rev > after {
			since = append(since, memChange{rec: OperatorRecord{Kind: k.kind, Key: k.key, Rev: rev}, deleted: true})
		}
	}
	sort.Slice(since, func(i, j int) bool { return since[i].rec.Rev < since[j].rec.Rev })
	for _, c := range since {
		w.push(c)
	}
	o.watchers[w] = struct{}{}
	o.mu.Unlock()
	go w.run(fn)
	var once sync.Once
	return func() {
		once.Do(func() {
			o.mu.Lock()
			delete(o.watchers, w)
			o.mu.Unlock()
			close(w.stop)
			<-w.done
		})
	}, nil
}

func (w *memWatch) push(c memChange) {
	w.mu.Lock()
	w.queue = append(w.queue, c)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run calls fn with each queued change in order until stop.
func (w *memWatch) run(fn func(OperatorRecord, bool)) {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-w.wake:
		}
		w.mu.Lock()
		q := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, c := range q {
			select {
			case <-w.stop:
				return
			default:
			}
			fn(c.rec, c.deleted)
		}
	}
}
