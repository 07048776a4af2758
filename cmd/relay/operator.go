package main

import (
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatrelay/chatrelay/relay"
	js "github.com/chatrelay/chatrelay/relay/jetstream"
)

// openOperator opens the operator's state (bans, mutes, the lockdown, the
// rooms' settings set with `relay admin topic`) on j: a KV bucket in file
// storage with replicas copies, so that it survives a restart and every
// relay sharing the server applies what the operator sets on any of them.
// Each store mode (--data-dir's embedded server, a NATS cluster) opens it
// with one call.
func openOperator(j jetstream.JetStream, replicas int) (relay.OperatorStore, error) {
	ops, err := js.NewOperator(j, js.OperatorOptions{Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("operator's state: %w", err)
	}
	return ops, nil
}
