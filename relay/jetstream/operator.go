package jetstream

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatrelay/chatrelay/relay"
)

// OperatorOptions configures Operator.
type OperatorOptions struct {
	// Bucket is the KV bucket's name (default "chatrelay_operator").
	Bucket string
	// Storage is the bucket's storage (default file: the operator's state
	// outlives the server).
	Storage jetstream.StorageType
	// Replicas of the bucket (default 1).
	Replicas int
	// Timeout of each request to the server, and of Load (default 5s).
	Timeout time.Duration
}

// Operator is relay.OperatorStore on a JetStream KV bucket: one key per
// record, "KIND.HEX" (the record's key in hex, since KV keys take few
// characters), holding the record as JSON (operatorRecord). A record's
// revision is the KV revision, the sequence of the bucket's stream, which
// orders every change of every key. Load leaves out and deletes the
// records whose Expires has passed. Any relay.OperatorStore may be held
// by several relays: each change one makes reaches the others' Watch.
type Operator struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	bucket  string
	timeout time.Duration
}

var _ relay.OperatorStore = (*Operator)(nil)

// operatorRecord is a record as the bucket holds it.
type operatorRecord struct {
	Kind    string          `json:"kind"`
	Key     string          `json:"key"`
	Expires time.Time       `json:"expires,omitzero"`
	Value   json.RawMessage `json:"value"`
}

// NewOperator opens (or creates) the bucket.
func NewOperator(js jetstream.JetStream, o OperatorOptions) (*Operator, error) {
	bucketDefaults(&o.Bucket, "chatrelay_operator", &o.Storage, &o.Replicas, &o.Timeout)
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "chatrelay operator's state: bans, mutes, lockdown, rooms' settings",
		History:     1,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: operator bucket %s: %w", o.Bucket, err)
	}
	return &Operator{js: js, kv: kv, bucket: o.Bucket, timeout: o.Timeout}, nil
}

func (o *Operator) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), o.timeout)
}

// errRecordName reports a kind or key the bucket cannot name.
var errRecordName = errors.New("jetstream: an operator record needs a kind of lower-case letters and a key")

// operatorKey is the KV key of a record.
func operatorKey(kind, key string) (string, error) {
	if kind == "" || key == "" || strings.IndexFunc(kind, func(r rune) bool { return r < 'a' || r > 'z' }) >= 0 {
		return "", fmt.Errorf("%w: %q %q", errRecordName, kind, key)
	}
	return kind + "." + hex.EncodeToString([]byte(key)), nil
}

// recordName is the kind and key of a KV key.
func recordName(k string) (kind, key string, ok bool) {
	kind, h, ok := strings.Cut(k, ".")
	b, err := hex.DecodeString(h)
	return kind, string(b), ok && err == nil && kind != "" && len(b) > 0
}

// decode reads an entry of the bucket: a record, or the deletion of one.
func decode(e jetstream.KeyValueEntry) (rec relay.OperatorRecord, deleted, ok bool) {
	if e.Operation() != jetstream.KeyValuePut {
		kind, key, ok := recordName(e.Key())
		return relay.OperatorRecord{Kind: kind, Key: key, Rev: e.Revision()}, true, ok
	}
	var r operatorRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return rec, false, false
	}
	return relay.OperatorRecord{Kind: r.Kind, Key: r.Key, Expires: r.Expires, Value: r.Value, Rev: e.Revision()}, false, true
}

// Load reads the last value of every key (a watch of the bucket until its
// initial values are in), after the stream's last sequence, which it
// returns as the load's revision; then it deletes the records that have
// expired, and the deletions older than half an hour (the default of
// PurgeDeletes), which every watch since has seen.
func (o *Operator) Load() ([]relay.OperatorRecord, uint64, error) {
	ctx, cancel := o.ctx()
	defer cancel()
	st, err := o.kv.Status(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("jetstream: load %s: %w", o.bucket, err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return nil, 0, fmt.Errorf("jetstream: load %s: no stream behind the bucket", o.bucket)
	}
	rev := bs.StreamInfo().State.LastSeq
	w, err := o.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, 0, fmt.Errorf("jetstream: load %s: %w", o.bucket, err)
	}
	now := time.Now()
	var recs []relay.OperatorRecord
	var stale []jetstream.KeyValueEntry
	complete := false
	for e := range w.Updates() {
		if e == nil {
			complete = true
			break
		}
		rec, _, ok := decode(e)
		switch {
		case !ok: // not one of ours: leave it
		case !rec.Expires.IsZero() && !now.Before(rec.Expires):
			stale = append(stale, e)
		default:
			recs = append(recs, rec)
		}
	}
	stopWatch(w)
	if !complete {
		return nil, 0, fmt.Errorf("jetstream: load %s: %w", o.bucket, errors.Join(ctx.Err(), errors.New("the watch ended early")))
	}
	for _, e := range stale { // best effort: a newer value of the key stays
		_ = o.kv.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
	}
	_ = o.kv.PurgeDeletes(ctx)
	return recs, rev, nil
}

// stopWatch stops w and drains it, so that its delivery, which blocks on
// a full channel, ends.
func stopWatch(w jetstream.KeyWatcher) {
	_ = w.Stop()
	for range w.Updates() {
	}
}

// Put stores r under its key and returns the key's new revision.
func (o *Operator) Put(r relay.OperatorRecord) (uint64, error) {
	k, err := operatorKey(r.Kind, r.Key)
	if err != nil {
		return 0, err
	}
	b, err := json.Marshal(operatorRecord{Kind: r.Kind, Key: r.Key, Expires: r.Expires, Value: r.Value})
	if err != nil {
		return 0, fmt.Errorf("jetstream: put %s %q: %w", r.Kind, r.Key, err)
	}
	ctx, cancel := o.ctx()
	defer cancel()
	rev, err := o.kv.Put(ctx, k, b)
	if err != nil {
		return 0, fmt.Errorf("jetstream: put %s %q: %w", r.Kind, r.Key, err)
	}
	return rev, nil
}

// Delete puts a delete marker on the key, as KeyValue.Delete does, but
// keeps the revision the server gave it (Delete drops it).
func (o *Operator) Delete(kind, key string) (uint64, error) {
	k, err := operatorKey(kind, key)
	if err != nil {
		return 0, err
	}
	m := nats.NewMsg("$KV." + o.bucket + "." + k)
	m.Header.Set("KV-Operation", "DEL")
	ctx, cancel := o.ctx()
	defer cancel()
	ack, err := o.js.PublishMsg(ctx, m)
	if err != nil {
		return 0, fmt.Errorf("jetstream: delete %s %q: %w", kind, key, err)
	}
	return ack.Sequence, nil
}

// Watch delivers the bucket's messages from sequence after+1 on: the
// last change of each key since, then every change, in the stream's
// order. If the server goes away for good, the watch ends (the
// connection's reconnects keep it otherwise).
func (o *Operator) Watch(after uint64, fn func(r relay.OperatorRecord, deleted bool)) (func(), error) {
	ctx, cancel := context.WithCancel(context.Background()) // the watch's life: cancel unsubscribes
	w, err := o.kv.WatchAll(ctx, jetstream.ResumeFromRevision(after+1))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("jetstream: watch %s: %w", o.bucket, err)
	}
	stopping, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			select {
			case <-stopping:
				continue // drain until the channel closes
			default:
			}
			if e == nil { // the changes made before the watch are in
				continue
			}
			if rec, deleted, ok := decode(e); ok && rec.Rev > after {
				fn(rec, deleted)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stopping)
			cancel()
			_ = w.Stop()
			<-done
		})
	}, nil
}
