package jetstream

import (
	"context"
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
}

// Directory is relay.NameDirectory on a JetStream KV bucket: key (in hex,
// since KV keys take few characters) to owner.
type Directory struct {
	kv      jetstream.KeyValue
	timeout time.Duration
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
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "chatrelay names: compare key (hex) to owner session",
		History:     1,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: names bucket %s: %w", o.Bucket, err)
	}
	return &Directory{kv: kv, timeout: o.Timeout}, nil
}

func (d *Directory) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d.timeout)
}

func kvKey(key string) string { return "n" + hex.EncodeToString([]byte(key)) }

// Claim creates the key (atomic: of concurrent creates one wins); if it
// exists and owner holds it, the claim succeeds again.
func (d *Directory) Claim(key, owner string) error {
	ctx, cancel := d.ctx()
	defer cancel()
	k := kvKey(key)
	for range 3 {
		_, err := d.kv.Create(ctx, k, []byte(owner))
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("jetstream: claim %q: %w", key, err)
		}
		e, err := d.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released meanwhile: try again
		}
		if err != nil {
			return fmt.Errorf("jetstream: claim %q: %w", key, err)
		}
		if string(e.Value()) == owner {
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
