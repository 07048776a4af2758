package main

import (
	"fmt"
	"os"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatrelay/chatrelay/relay"
	js "github.com/chatrelay/chatrelay/relay/jetstream"
)

// store is the durable seam of --data-dir: an embedded JetStream server
// (no listener) holding the rooms' logs and the operator's state.
type store struct {
	emb   *js.Embedded
	names relay.NameDirectory
	logs  relay.RoomLogs
	ops   relay.OperatorStore
}

// openStore starts the embedded server storing in o.DataDir. Rooms' logs
// are streams there; inboxes stay in memory (a session does not survive a
// restart, nor should its inbox's stream); names are a KV bucket in the
// server's memory, since the sessions that hold them end with the process
// (a name lease for several nodes is later work).
func openStore(o Options) (*store, error) {
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", o.DataDir, err)
	}
	emb, err := js.StartEmbedded(o.DataDir)
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", o.DataDir, err)
	}
	logs, err := js.NewLogs(emb.JS, js.LogOptions{
		History: o.History,
		MaxAge:  o.HistoryAge,
		Cache:   o.Ring,
		Local:   relay.NewMemoryLogs(o.Ring),
	})
	if err != nil {
		emb.Close()
		return nil, err
	}
	names, err := js.NewDirectory(emb.JS, js.DirectoryOptions{Storage: jetstream.MemoryStorage})
	if err != nil {
		emb.Close()
		return nil, fmt.Errorf("--data-dir %s: %w", o.DataDir, err)
	}
	ops, err := openOperator(emb.JS, 1)
	if err != nil {
		emb.Close()
		return nil, fmt.Errorf("--data-dir %s: %w", o.DataDir, err)
	}
	return &store{emb: emb, names: names, logs: logs, ops: ops}, nil
}

// Close shuts the embedded server down and waits until its store is
// closed.
func (s *store) Close() { s.emb.Close() }
