package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/chatrelay/chatrelay/relay"
	js "github.com/chatrelay/chatrelay/relay/jetstream"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// store is the seam's shared side when rooms are stored: with --data-dir an
// embedded JetStream server (no listener) of this relay alone; with --nats
// a NATS cluster that several relays share.
type store struct {
	emb      *js.Embedded // --data-dir only
	nc       *nats.Conn
	dir      *js.Directory // --nats only: leased names
	names    relay.NameDirectory
	logs     relay.RoomLogs
	sessions *js.Sessions
	cluster  relay.Cluster       // --nats only
	ops      relay.OperatorStore // bans, mutes, lockdown, rooms' settings
	node     string              // Config.Node: "" with --data-dir (every stored session is this relay's)

	leaseFailures atomic.Uint64
}

// openStore opens what o asks for: --data-dir or --nats. Rooms' logs are
// streams there; inboxes stay in memory (a session's inbox ends with the
// session, and a stream per login would pile up in the store).
func openStore(o Options, log *zap.Logger) (*store, error) {
	if o.NATS != "" {
		return openCluster(o, log)
	}
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
	// Names are a KV bucket in the server's memory: the sessions that hold
	// them end with the process.
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
	s := &store{emb: emb, nc: emb.Conn, names: names, logs: logs, ops: ops}
	if s.sessions, err = js.NewSessions(emb.JS, js.SessionOptions{
		Lease:           dataDirSessionLease,
		OnRefreshFailed: func() { s.leaseFailures.Add(1) },
	}); err != nil {
		emb.Close()
		return nil, fmt.Errorf("--data-dir %s: %w", o.DataDir, err)
	}
	return s, nil
}

// dataDirSessionLease is how long a session outlives a crash with
// --data-dir: a relay back within it takes its classic members back and
// lets its v2 clients resume; after it they log in again.
const dataDirSessionLease = 10 * time.Minute

// natsConnectTimeout bounds the first connection to the cluster at start:
// a relay that cannot reach NATS then exits with the reason (its
// supervisor starts it again); once running it reconnects for ever.
const natsConnectTimeout = 10 * time.Second

// openCluster connects to the NATS cluster of --nats.
func openCluster(o Options, log *zap.Logger) (*store, error) {
	opts := []nats.Option{
		nats.Name("chatrelay " + o.node()),
		nats.Timeout(natsConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: this relay closed it
				log.Warn("NATS connection lost: new logins and chats are refused until it is back", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS connection back", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
	}
	if o.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(o.NATSCreds))
	}
	if o.NATSTLSCA != "" {
		opts = append(opts, nats.RootCAs(o.NATSTLSCA))
	}
	if o.NATSTLSCert != "" {
		opts = append(opts, nats.ClientCert(o.NATSTLSCert, o.NATSTLSKey))
	}
	urls := strings.Join(strings.Fields(strings.ReplaceAll(o.NATS, ",", " ")), ",")
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		return nil, fmt.Errorf("--nats %s: %w", o.NATS, err)
	}
	jsc, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("--nats %s: %w", o.NATS, err)
	}
	s := &store{nc: nc}
	// A cluster that is still forming (no JetStream leader yet) answers
	// with timeouts: try again for a while before giving up.
	for began := time.Now(); ; {
		err := s.setup(jsc, o)
		if err == nil {
			return s, nil
		}
		if time.Since(began) > natsStartPatience {
			nc.Close()
			return nil, fmt.Errorf("--nats %s: %w", o.NATS, err)
		}
		log.Warn("NATS JetStream not ready: trying again", zap.Error(err))
		time.Sleep(time.Second)
	}
}

// natsStartPatience is how long a relay starting with --nats waits for
// JetStream to answer (a cluster starting with it elects its leaders).
const natsStartPatience = 30 * time.Second

// setup opens the rooms' logs (main's, to see that streams can be made),
// the names, the sessions and the operator's state on jsc.
func (s *store) setup(jsc jetstream.JetStream, o Options) error {
	logs, err := js.NewLogs(jsc, js.LogOptions{
		History:  o.History,
		MaxAge:   o.HistoryAge,
		Cache:    o.Ring,
		Shared:   true,
		Replicas: o.NATSReplicas,
		Local:    relay.NewMemoryLogs(o.Ring),
	})
	if err != nil {
		return err
	}
	if _, err := logs.Open(wire.RoomMain); err != nil {
		return err
	}
	dir, err := js.NewDirectory(jsc, js.DirectoryOptions{
		Storage:         jetstream.FileStorage, // a NATS restart must not free the names of members still logged in
		Replicas:        o.NATSReplicas,
		Lease:           o.NameLease,
		OnRefreshFailed: func() { s.leaseFailures.Add(1) },
	})
	if err != nil {
		return err
	}
	sessions, err := js.NewSessions(jsc, js.SessionOptions{
		Replicas:        o.NATSReplicas,
		Lease:           o.NameLease,
		OnRefreshFailed: func() { s.leaseFailures.Add(1) },
	})
	if err != nil {
		dir.Close()
		return err
	}
	ops, err := openOperator(jsc, o.NATSReplicas)
	if err != nil {
		sessions.Close()
		dir.Close()
		return err
	}
	s.dir, s.names, s.logs, s.sessions, s.node, s.ops = dir, dir, logs, sessions, o.node(), ops
	s.cluster = js.NewCluster(sessions)
	return nil
}

// Ready reports why the store cannot serve now (nil when it can).
func (s *store) Ready() error {
	if st := s.nc.Status(); st != nats.CONNECTED {
		return errors.New("store unavailable: NATS " + strings.ToLower(st.String()))
	}
	return nil
}

// Close stops refreshing leases (this relay's names are freed after the
// lease), closes the connection, and with --data-dir shuts the embedded
// server down and waits until its store is closed.
func (s *store) Close() {
	if s.dir != nil {
		s.dir.Close()
	}
	if s.sessions != nil {
		s.sessions.Close()
	}
	if s.emb != nil {
		s.emb.Close()
		return
	}
	s.nc.Close()
}
