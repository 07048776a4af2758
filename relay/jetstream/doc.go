// Package jetstream implements the relay's seam (relay.RoomLogs,
// relay.NameDirectory, relay.OperatorStore) on NATS JetStream, so that a
// room's history and the operator's state survive a restart and, later,
// several relays share one order:
//
//   - Logs: one stream per room (name and subject derived from the room
//     name's bytes in hex), bounded by History events and MaxAge. A
//     room's seq is its stream's sequence; its epoch is kept in the
//     stream's metadata, so it survives restarts with the same store.
//     Recent lines are cached so that repair and backlog of the tail do
//     not ask the server.
//     A room's log is a relay.RoomFollower: an ordered consumer hands each
//     node the events every node appended, so that each fans out locally,
//     in the one order of the stream, to its own members.
//   - Directory: a KV bucket from name key to owner; Claim is KV Create
//     (atomic across nodes), Release a delete guarded by the revision.
//     With a lease, the bucket's TTL frees the names of a relay that
//     stopped refreshing them (it died), and the Directory refreshes its
//     own every lease/3 with a compare-and-set.
//   - Sessions: a KV bucket of sessions (a v2 one under a hash of its
//     token), leased like names, for resume after a crash or a failover.
//   - Operator: a KV bucket of the operator's records (bans, mutes, the
//     lockdown, rooms' settings) as JSON, one key each; a revision is the
//     bucket stream's sequence, and Watch is a KV watch from the revision
//     of the relay's Load, so a change made on one relay applies on all.
//
// While the connection is down every call fails at once with
// relay.ErrUnavailable, without a request.
//
// Embedded starts a nats-server with JetStream inside the process, with no
// listener, for `relay --data-dir`; `relay --nats` connects to a cluster.
package jetstream

import (
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatrelay/chatrelay/relay"
)

// errDown is returned at once, without a request, while the connection is
// not up: a relay whose NATS is away answers "unavailable" in microseconds
// instead of holding a worker for a request timeout per login or chat.
var errDown = fmt.Errorf("jetstream: %w: not connected to NATS", relay.ErrUnavailable)

// down reports whether js's connection is not up now.
func down(js jetstream.JetStream) bool { return !js.Conn().IsConnected() }
