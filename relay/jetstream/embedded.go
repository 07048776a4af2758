package jetstream

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Embedded is a nats-server with JetStream running inside this process,
// storing in one directory, and a connection to it. It opens no port:
// the connection is in-process.
type Embedded struct {
	Server *server.Server
	Conn   *nats.Conn
	JS     jetstream.JetStream
}

// StartEmbedded starts a JetStream server storing in dir (created if
// needed) and connects to it in-process.
func StartEmbedded(dir string) (*Embedded, error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "chatrelay",
		JetStream:  true,
		StoreDir:   dir,
		DontListen: true, // in-process connections only
		NoLog:      true,
		NoSigs:     true, // the relay handles signals
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, errors.New("embedded nats-server: not ready after 10s (is " + dir + " usable?)")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("chatrelay"), nats.MaxReconnects(-1))
	if err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats-server: connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	return &Embedded{Server: ns, Conn: nc, JS: js}, nil
}

// Close closes the connection, then shuts the server down and waits until
// it has (its store is flushed and closed).
func (e *Embedded) Close() {
	e.Conn.Close()
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
}
