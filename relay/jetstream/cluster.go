package jetstream

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// Cluster is relay.Cluster on a NATS connection: the sessions are the
// Sessions bucket, watched; a direct message is a request to the subject
// of the recipient's relay.
type Cluster struct {
	nc       *nats.Conn
	sessions *Sessions
	timeout  time.Duration
}

var _ relay.Cluster = (*Cluster)(nil)

// NewCluster returns the cluster of the relays sharing sessions' server.
func NewCluster(sessions *Sessions) *Cluster {
	return &Cluster{nc: sessions.kv.js.Conn(), sessions: sessions, timeout: 2 * time.Second}
}

// dmSubject is the subject a relay called node serves direct messages on
// (the node's name in hex: any name is a valid subject token).
func dmSubject(node string) string { return "chatrelay.dm." + hex.EncodeToString([]byte(node)) }

func (c *Cluster) SendDM(node string, dm relay.DirectMessage) (string, error) {
	if !c.nc.IsConnected() {
		return "", errDown
	}
	b, err := json.Marshal(dm)
	if err != nil {
		return "", err
	}
	msg, err := c.nc.Request(dmSubject(node), b, c.timeout)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return wire.CodeNoSuchMember, nil // that relay is gone
		}
		return "", unavailable("direct message to relay "+node, err)
	}
	return string(msg.Data), nil
}

func (c *Cluster) ServeDMs(node string, fn func(relay.DirectMessage) string) (func(), error) {
	sub, err := c.nc.Subscribe(dmSubject(node), func(msg *nats.Msg) {
		var dm relay.DirectMessage
		code := wire.CodeNoSuchMember
		if json.Unmarshal(msg.Data, &dm) == nil {
			code = fn(dm)
		}
		_ = msg.Respond([]byte(code))
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: serve direct messages: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// WatchSessions watches the Sessions bucket. A key deleted is a session
// its relay ended; a key purged by the bucket's TTL (a marker, see
// SessionOptions.Lease) is one nobody refreshed: expired.
func (c *Cluster) WatchSessions(fn func(rec relay.SessionRecord, gone, expired bool)) (func(), error) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := c.sessions.kv.kv.WatchAll(ctx)
	if err != nil {
		cancel()
		return nil, unavailable("watch sessions", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		known := map[string]relay.SessionRecord{}
		for e := range w.Updates() {
			if e == nil {
				continue // the end of the values stored before the watch
			}
			k := e.Key()
			switch e.Operation() {
			case jetstream.KeyValuePut:
				var rec relay.SessionRecord
				if json.Unmarshal(e.Value(), &rec) != nil {
					continue
				}
				known[k] = rec
				fn(rec, false, false)
			case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
				rec, ok := known[k]
				if !ok {
					continue
				}
				delete(known, k)
				fn(rec, true, e.Operation() == jetstream.KeyValuePurge)
			}
		}
	}()
	return func() {
		cancel()
		_ = w.Stop()
		wg.Wait()
	}, nil
}
