package jetstream

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatrelay/chatrelay/relay"
)

// DirectoryOptions configures Directory.
type DirectoryOptions struct {
	// Bucket is the KV bucket's name (default "chatrelay_names").
	Bucket string
	// Storage is the bucket's storage (default file).
	Storage jetstream.StorageType
	// Replicas of the bucket (default 1).
	Replicas int
	// Timeout of each request to the server (default 5s).
	Timeout time.Duration
	// Lease, when positive, is how long a name outlives the last refresh
	// of the relay that holds it (the bucket's TTL): a relay that dies
	// frees its members' names after at most Lease. The Directory then
	// refreshes the names it holds every Lease/3 until Close. 0: names
	// are held until released.
	Lease time.Duration
	// OnRefreshFailed, if not nil, is called for each name whose refresh
	// failed (the store did not answer, or the name is no longer held).
	OnRefreshFailed func()
}

// Directory is relay.NameDirectory on a JetStream KV bucket: key (in hex,
// since KV keys take few characters) to owner. With a lease, the names it
// holds are refreshed in the background until Close.
type Directory struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	timeout time.Duration
	o       DirectoryOptions

	mu   sync.Mutex       // protects held
	held map[string]lease // KV key -> what this directory claimed there

	stop chan struct{} // closed by Close
	done chan struct{} // closed when the refresher returns
}

// lease is one name this directory holds: its owner and the revision of
// its last write, for compare-and-set refreshes.
type lease struct {
	owner string
	rev   uint64
}

var _ relay.NameDirectory = (*Directory)(nil)

// NewDirectory opens (or creates) the bucket.
func NewDirectory(js jetstream.JetStream, o DirectoryOptions) (*Directory, error) {
	if o.Bucket == "" {
		o.Bucket = "chatrelay_names"
	}
	if o.Storage == 0 {
		o.Storage = jetstream.FileStorage
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	if o.Lease < 0 {
		return nil, fmt.Errorf("jetstream: names lease %v: must not be negative", o.Lease)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "chatrelay names: compare key (hex) to owner session",
		History:     1,
		TTL:         o.Lease,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: names bucket %s: %w", o.Bucket, err)
	}
	d := &Directory{js: js, kv: kv, timeout: o.Timeout, o: o, held: make(map[string]lease), stop: make(chan struct{}), done: make(chan struct{})}
	if o.Lease > 0 {
		go d.refresher()
	} else {
		close(d.done)
	}
	return d, nil
}

// Close stops refreshing (the names it held are freed after the lease)
// and waits until the refresher has returned.
func (d *Directory) Close() {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	<-d.done
}

// refresher rewrites every held name each Lease/3, compare-and-set on the
// revision it wrote last: a name that someone else took meanwhile (after
// this relay could not refresh it for a whole lease) is not taken back.
func (d *Directory) refresher() {
	defer close(d.done)
	t := time.NewTicker(d.o.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		d.mu.Lock()
		keys := make(map[string]lease, len(d.held))
		for k, l := range d.held {
			keys[k] = l
		}
		d.mu.Unlock()
		for k, l := range keys {
			ctx, cancel := d.ctx()
			rev, err := d.kv.Update(ctx, k, []byte(l.owner), l.rev)
			cancel()
			d.mu.Lock()
			cur, ok := d.held[k]
			switch {
			case !ok || cur.owner != l.owner:
				// released (or claimed again) meanwhile: leave it
			case err == nil:
				d.held[k] = lease{owner: l.owner, rev: rev}
			case errors.Is(err, jetstream.ErrKeyNotFound) || isWrongRevision(err):
				delete(d.held, k) // lost: the lease ran out and it is gone or someone else's
			}
			d.mu.Unlock()
			if err != nil && d.o.OnRefreshFailed != nil {
				d.o.OnRefreshFailed()
			}
		}
	}
}

// isWrongRevision reports a compare-and-set that lost.
func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// remember notes that owner holds k at revision rev.
func (d *Directory) remember(k, owner string, rev uint64) {
	d.mu.Lock()
	d.held[k] = lease{owner: owner, rev: rev}
	d.mu.Unlock()
}

func (d *Directory) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d.timeout)
}

func kvKey(key string) string { return "n" + hex.EncodeToString([]byte(key)) }

// Claim creates the key (atomic: of concurrent creates one wins); if it
// exists and owner holds it, the claim succeeds again.
func (d *Directory) Claim(key, owner string) error {
	if down(d.js) {
		return errDown
	}
	ctx, cancel := d.ctx()
	defer cancel()
	k := kvKey(key)
	for range 3 {
		rev, err := d.kv.Create(ctx, k, []byte(owner))
		if err == nil {
			d.remember(k, owner, rev)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("jetstream: claim %q: %w: %w", key, relay.ErrUnavailable, err)
		}
		e, err := d.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released meanwhile: try again
		}
		if err != nil {
			return fmt.Errorf("jetstream: claim %q: %w: %w", key, relay.ErrUnavailable, err)
		}
		if string(e.Value()) == owner {
			d.remember(k, owner, e.Revision())
			return nil
		}
		return relay.ErrNameTaken
	}
	return relay.ErrNameTaken // it keeps changing hands: someone else has it
}

// Release deletes the key if owner holds it, guarded by the revision read,
// so that a claim by someone else in between is never undone.
func (d *Directory) Release(key, owner string) {
	ctx, cancel := d.ctx()
	defer cancel()
	k := kvKey(key)
	d.mu.Lock()
	if l, ok := d.held[k]; ok && l.owner == owner {
		delete(d.held, k)
	}
	d.mu.Unlock()
	e, err := d.kv.Get(ctx, k)
	if err != nil || string(e.Value()) != owner {
		return
	}
	_ = d.kv.Delete(ctx, k, jetstream.LastRevision(e.Revision())) // a conflict: it is no longer owner's
}

// Lookup reads the key; an error reads as nobody.
func (d *Directory) Lookup(key string) (string, bool) {
	ctx, cancel := d.ctx()
	defer cancel()
	e, err := d.kv.Get(ctx, kvKey(key))
	if err != nil {
		return "", false
	}
	return string(e.Value()), true
}
