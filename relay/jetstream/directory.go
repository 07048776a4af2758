package jetstream

import (
	"encoding/hex"
	"errors"
	"fmt"
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
	kv *leasedKV
}

var _ relay.NameDirectory = (*Directory)(nil)

// NewDirectory opens (or creates) the bucket.
func NewDirectory(js jetstream.JetStream, o DirectoryOptions) (*Directory, error) {
	bucketDefaults(&o.Bucket, "chatrelay_names", &o.Storage, &o.Replicas, &o.Timeout)
	kv, err := openLeasedKV(js, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "chatrelay names: compare key (hex) to owner session",
		History:     1,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
	}, o.Timeout, o.Lease, o.OnRefreshFailed)
	if err != nil {
		return nil, err
	}
	return &Directory{kv: kv}, nil
}

// Close stops refreshing (the names it held are freed after the lease)
// and waits until the refresher has returned.
func (d *Directory) Close() { d.kv.close() }

func kvKey(key string) string { return "n" + hex.EncodeToString([]byte(key)) }

// Claim creates the key (atomic: of concurrent creates one wins); if it
// exists and owner holds it, the claim succeeds again and this directory
// takes the name over (a session adopted from a relay that died: that
// relay's next refresh fails, and it lets the name go).
func (d *Directory) Claim(key, owner string) error {
	k := kvKey(key)
	for range 3 {
		err := d.kv.create(k, []byte(owner))
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("claim %q: %w", key, err)
		}
		e, err := d.kv.get(k)
		if err != nil {
			return fmt.Errorf("claim %q: %w", key, err)
		}
		if e == nil {
			continue // released meanwhile: try again
		}
		if string(e.Value()) != owner {
			return relay.ErrNameTaken
		}
		if h, ok := d.kv.holds(k); ok && h.rev == e.Revision() {
			return nil // ours already
		}
		if err := d.kv.takeOver(k, []byte(owner), e.Revision()); err != nil {
			if isWrongRevision(err) {
				continue
			}
			return fmt.Errorf("claim %q: %w", key, err)
		}
		return nil
	}
	return relay.ErrNameTaken // it keeps changing hands: someone else has it
}

// Release deletes the key if this directory holds it for owner, guarded by
// the revision it wrote, so that a claim by someone else in between (or a
// takeover by another relay) is never undone.
func (d *Directory) Release(key, owner string) {
	k := kvKey(key)
	if h, ok := d.kv.holds(k); !ok || string(h.value) != owner {
		return
	}
	d.kv.drop(k)
}

// Lookup reads the key; an error reads as nobody.
func (d *Directory) Lookup(key string) (string, bool) {
	e, err := d.kv.get(kvKey(key))
	if err != nil || e == nil {
		return "", false
	}
	return string(e.Value()), true
}
