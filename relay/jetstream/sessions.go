package jetstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatrelay/chatrelay/relay"
)

// SessionOptions configures Sessions.
type SessionOptions struct {
	// Bucket is the KV bucket's name (default "chatrelay_sessions").
	Bucket string
	// Storage is the bucket's storage (default file).
	Storage jetstream.StorageType
	// Replicas of the bucket (default 1).
	Replicas int
	// Timeout of each request to the server (default 5s).
	Timeout time.Duration
	// Lease is how long a session's record outlives the last refresh of
	// the relay that holds it (the bucket's TTL; refreshed every Lease/3
	// until Close). A relay that is down for longer loses its sessions: its
	// v2 clients log in again, its classic members must. 0: kept until
	// deleted.
	Lease time.Duration
	// OnRefreshFailed, if not nil, is called for each record whose refresh
	// failed.
	OnRefreshFailed func()
}

// Sessions is relay.SessionStore on a JetStream KV bucket. A v2 session's
// key is a hash of its token (the token itself is never stored: reading
// the bucket does not let anyone resume a session); a classic session's
// is its ID.
type Sessions struct {
	kv *leasedKV
}

var _ relay.SessionStore = (*Sessions)(nil)

// NewSessions opens (or creates) the bucket.
func NewSessions(js jetstream.JetStream, o SessionOptions) (*Sessions, error) {
	bucketDefaults(&o.Bucket, "chatrelay_sessions", &o.Storage, &o.Replicas, &o.Timeout)
	cfg := jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "chatrelay sessions: token hash (v2) or ID (classic) to session",
		History:     1,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
	}
	if o.Lease > 0 {
		// A key that expires leaves a marker, so that a watcher
		// (Cluster.WatchSessions) sees the session end.
		cfg.LimitMarkerTTL = max(o.Lease, time.Second)
	}
	kv, err := openLeasedKV(js, cfg, o.Timeout, o.Lease, o.OnRefreshFailed)
	if err != nil {
		return nil, err
	}
	return &Sessions{kv: kv}, nil
}

// Close stops refreshing and waits until the refresher has returned.
func (s *Sessions) Close() { s.kv.close() }

// sessionKey is the record's key: "t" and the token's SHA-256 (v2), or
// "c" and the ID in hex (classic).
func sessionKey(id, token string) string {
	if token != "" {
		return tokenKey(token)
	}
	return "c" + hex.EncodeToString([]byte(id))
}

func tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "t" + hex.EncodeToString(sum[:20])
}

func (s *Sessions) Put(rec relay.SessionRecord, token string) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := s.kv.put(sessionKey(rec.ID, token), b); err != nil {
		return fmt.Errorf("store session of %q: %w", rec.Name, err)
	}
	return nil
}

func (s *Sessions) Delete(id, token string) {
	s.kv.drop(sessionKey(id, token))
}

func (s *Sessions) ByToken(token string) (relay.SessionRecord, bool, error) {
	var rec relay.SessionRecord
	if token == "" {
		return rec, false, nil
	}
	e, err := s.kv.get(tokenKey(token))
	if err != nil || e == nil {
		return rec, false, err
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, false, nil // not a record of ours: unknown
	}
	return rec, true, nil
}

func (s *Sessions) Classic(node string) ([]relay.SessionRecord, error) {
	if down(s.kv.js) {
		return nil, errDown
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.kv.timeout)
	defer cancel()
	// One watch hands over every record stored, then nil: one request for
	// all of them, not one per key.
	w, err := s.kv.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, unavailable("list sessions", err)
	}
	defer w.Stop()
	var recs []relay.SessionRecord
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				return recs, nil
			}
			var rec relay.SessionRecord
			if !strings.HasPrefix(e.Key(), "c") || json.Unmarshal(e.Value(), &rec) != nil || rec.Proto != relay.ProtoClassic {
				continue
			}
			if node == "" || rec.Node == node {
				recs = append(recs, rec)
			}
		case <-ctx.Done():
			return recs, unavailable("list sessions", ctx.Err())
		}
	}
}
