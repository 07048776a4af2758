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
//   - Directory: a KV bucket from name key to owner; Claim is KV Create
//     (atomic across nodes), Release a delete guarded by the revision.
//   - Operator: a KV bucket of the operator's records (bans, mutes, the
//     lockdown, rooms' settings) as JSON, one key each; a revision is the
//     bucket stream's sequence, and Watch is a KV watch from the revision
//     of the relay's Load, so a change made on one relay applies on all.
//
// Embedded starts a nats-server with JetStream inside the process, with no
// listener, for `relay --data-dir`.
//
// Not yet: name leases (a bucket TTL refreshed by the holder, so a dead
// node's names expire) and fan-out across nodes.
package jetstream
