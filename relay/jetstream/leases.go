package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatrelay/chatrelay/relay"
)

// bucketDefaults fills in the defaults every bucket of this package shares:
// its name, file storage, one replica, 5 s per request.
func bucketDefaults(bucket *string, name string, storage *jetstream.StorageType, replicas *int, timeout *time.Duration) {
	if *bucket == "" {
		*bucket = name
	}
	if *storage == 0 {
		*storage = jetstream.FileStorage
	}
	if *replicas == 0 {
		*replicas = 1
	}
	if *timeout <= 0 {
		*timeout = 5 * time.Second
	}
}

// leasedKV is a KV bucket in which this process holds some keys: it
// remembers the revision of its last write of each, so that it writes and
// deletes them by compare-and-set only (a key another process took over
// is never written or deleted again from here), and with a lease it
// rewrites them every lease/3: the bucket's TTL then frees the keys of a
// process that died. (A per-key TTL would be lost on Update; the bucket's
// TTL applies to each key's latest write.)
type leasedKV struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	timeout time.Duration
	lease   time.Duration
	onFail  func() // a refresh failed; nil for none

	mu   sync.Mutex      // protects held
	held map[string]held // key -> this process's last write

	stop chan struct{} // closed by close
	done chan struct{} // closed when the refresher returns
}

// held is this process's last write of a key.
type held struct {
	value []byte
	rev   uint64
	// unsure: a refresh after rev went out and no answer came (a timeout,
	// the connection or the stream's leader lost meanwhile): the server
	// may have stored it, under a revision this process never heard of.
	unsure bool
}

// openLeasedKV opens (or creates, or updates) the bucket of cfg, with the
// lease as its TTL.
func openLeasedKV(js jetstream.JetStream, cfg jetstream.KeyValueConfig, timeout, lease time.Duration, onFail func()) (*leasedKV, error) {
	if lease < 0 {
		return nil, fmt.Errorf("jetstream: bucket %s: lease %v: must not be negative", cfg.Bucket, lease)
	}
	cfg.TTL = lease
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("jetstream: bucket %s: %w", cfg.Bucket, err)
	}
	l := &leasedKV{js: js, kv: kv, timeout: timeout, lease: lease, onFail: onFail,
		held: make(map[string]held), stop: make(chan struct{}), done: make(chan struct{})}
	if lease > 0 {
		go l.refresher()
	} else {
		close(l.done)
	}
	return l, nil
}

func (l *leasedKV) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), l.timeout)
}

// unavailable wraps a failed request as relay.ErrUnavailable.
func unavailable(what string, err error) error {
	return fmt.Errorf("jetstream: %s: %w: %w", what, relay.ErrUnavailable, err)
}

// create writes k if nobody has it; errors.Is(err, jetstream.ErrKeyExists)
// if somebody does.
func (l *leasedKV) create(k string, v []byte) error {
	if down(l.js) {
		return errDown
	}
	ctx, cancel := l.ctx()
	defer cancel()
	rev, err := l.kv.Create(ctx, k, v)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		return unavailable("create "+k, err)
	}
	l.keep(k, v, rev)
	return nil
}

// takeOver writes v to k over the revision rev that the caller read: this
// process holds k from now on (a process that held it before loses its
// next refresh, and with it the key).
func (l *leasedKV) takeOver(k string, v []byte, rev uint64) error {
	if down(l.js) {
		return errDown
	}
	ctx, cancel := l.ctx()
	defer cancel()
	rev, err := l.kv.Update(ctx, k, v, rev)
	if err != nil {
		return unavailable("take over "+k, err)
	}
	l.keep(k, v, rev)
	return nil
}

// put writes v to k: over this process's last write if it holds k, else
// as a new key, else over whatever is there (taking it over).
func (l *leasedKV) put(k string, v []byte) error {
	l.mu.Lock()
	h, ok := l.held[k]
	l.mu.Unlock()
	if ok {
		if err := l.takeOver(k, v, h.rev); err == nil || !isWrongRevision(err) {
			return err
		}
	}
	err := l.create(k, v)
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	e, err := l.get(k)
	if err != nil {
		return err
	}
	if e == nil {
		return l.create(k, v) // gone meanwhile
	}
	return l.takeOver(k, v, e.Revision())
}

// get reads k; nil if it does not exist.
func (l *leasedKV) get(k string) (jetstream.KeyValueEntry, error) {
	if down(l.js) {
		return nil, errDown
	}
	ctx, cancel := l.ctx()
	defer cancel()
	e, err := l.kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("get "+k, err)
	}
	return e, nil
}

// keep records this process's write of k.
func (l *leasedKV) keep(k string, v []byte, rev uint64) {
	l.mu.Lock()
	l.held[k] = held{value: v, rev: rev}
	l.mu.Unlock()
}

// holds returns this process's last write of k, if it holds k.
func (l *leasedKV) holds(k string) (held, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.held[k]
	return h, ok
}

// drop deletes k if this process still holds it (guarded by the revision
// of its last write: a key taken over since is left alone).
func (l *leasedKV) drop(k string) {
	l.mu.Lock()
	h, ok := l.held[k]
	delete(l.held, k)
	l.mu.Unlock()
	if !ok || down(l.js) {
		return // not ours; or the lease frees it
	}
	ctx, cancel := l.ctx()
	defer cancel()
	_ = l.kv.Delete(ctx, k, jetstream.LastRevision(h.rev)) // a conflict: no longer ours
}

// close stops refreshing (the keys held are freed after the lease) and
// waits until the refresher has returned.
func (l *leasedKV) close() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// refresher rewrites every held key each lease/3, compare-and-set on the
// revision written last: a key that another process took over meanwhile
// (or that expired after this one could not refresh it for a whole lease)
// is let go, not taken back.
func (l *leasedKV) refresher() {
	defer close(l.done)
	t := time.NewTicker(l.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		keys := make(map[string]held, len(l.held))
		for k, h := range l.held {
			keys[k] = h
		}
		l.mu.Unlock()
		for k, h := range keys {
			var (
				rev uint64
				err = errDown
			)
			if !down(l.js) {
				rev, err = l.update(k, h.value, h.rev)
				if isWrongRevision(err) && h.unsure {
					rev, err = l.reclaim(k, h, err)
				}
			}
			l.mu.Lock()
			cur, ok := l.held[k]
			switch {
			case !ok || cur.rev != h.rev:
				// dropped or written again meanwhile: leave it
			case err == nil:
				l.held[k] = held{value: h.value, rev: rev}
			case errors.Is(err, jetstream.ErrKeyNotFound) || isWrongRevision(err):
				delete(l.held, k) // lost: expired, or someone else's now
			case !errors.Is(err, errDown):
				l.held[k] = held{value: h.value, rev: h.rev, unsure: true}
			}
			l.mu.Unlock()
			if err != nil && l.onFail != nil {
				l.onFail()
			}
		}
	}
}

// update writes v to k over rev (compare-and-set).
func (l *leasedKV) update(k string, v []byte, rev uint64) (uint64, error) {
	ctx, cancel := l.ctx()
	defer cancel()
	return l.kv.Update(ctx, k, v, rev)
}

// reclaim is called when a refresh of h lost its compare-and-set (err)
// after an earlier one went unanswered: if k holds h's value, that earlier
// write was stored, and k is still this process's; it is refreshed over
// the revision found. Otherwise err stands: someone else has k now. (A
// relay that adopted the session wrote the same owner: then both refresh
// it for one session until one of them lets it go, which gives the name
// to nobody else.)
func (l *leasedKV) reclaim(k string, h held, err error) (uint64, error) {
	e, gerr := l.get(k)
	if gerr != nil {
		return 0, gerr // still unsure: the next refresh asks again
	}
	if e == nil || !bytes.Equal(e.Value(), h.value) {
		return 0, err
	}
	return l.update(k, h.value, e.Revision())
}

// isWrongRevision reports a compare-and-set that lost.
func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
