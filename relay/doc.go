// Package relay is chatrelay's engine: it turns datagrams from members into
// replies and fan-out, for one room, on one node. It speaks the classic
// text protocol (docs/PROTOCOL.md), keeps the registry of members, and
// serves the admin requests; it knows nothing of goroutine pools or
// Prometheus, which it reaches through the Executor and Observer interfaces
// (cmd/relay wires in pool and metrics).
//
// # The datagram path
//
//  1. Server.readLoop reads datagrams, up to 64 per recvmmsg (with the local
//     address each was sent to, IP_PKTINFO), drops and counts empty or
//     oversize ones, and hands each buffer to the dispatcher, taking a fresh
//     one in its place. It never parses, never answers, never blocks. With
//     --readers N there are N sockets in an SO_REUSEPORT group, one reader
//     each; the kernel keeps each sender on one socket.
//  2. The dispatcher appends the datagram to its sender's lane. A full queue
//     (all senders, or this sender) drops and counts it. A lane is run by at
//     most one worker at a time, so each sender's requests are handled in
//     the order they arrived, while different senders run in parallel.
//  3. A worker (an Executor task) takes a lane's backlog, handles each
//     datagram in order, and moves on to the next ready lane; it exits when
//     none is left. One pool task thus serves many datagrams. Handler
//     panics are recovered per datagram.
//  4. dispatch parses the datagram and runs the row of the handler table for
//     its verb; the row's fields carry the checks (must be a member, must
//     name oneself). Garbage is counted, never answered.
//  5. A broadcast is sequenced, encoded once and queued, with the registry's
//     snapshot (one atomic load, no lock), in each shard's outbox
//     (fanout.go; one shard per CPU, each member in the shard its address
//     picks). After each lane batch the worker flushes: a shard nobody is
//     sending gets it as its sender until it is empty, so at low load the
//     event leaves at once and under load the events of a batch and a round
//     leave together, packed for v2 members into datagrams up to the send
//     budget (larger to loopback). A reply to a member queues behind what
//     was queued before it. Sends are sendmmsg with MSG_DONTWAIT, up to 64
//     destinations per call: a failing or full recipient is counted and
//     skipped, and no send can block a worker.
//
// # Locks
//
// Every mutex sits directly above the fields it guards. The lock order
// (A -> B: B may be taken while A is held, never the reverse):
//
//	knobs.mu         Reconfigure only (reload.go) -> Registry.mu
//	dispatcher.mu    leaf: nothing else is taken under it; handlers run without it
//	room.mu          -> outbox.mu, each shard's in turn (an event is queued in seq order)
//	outbox.mu        leaf; a producer may wait on it only while the outbox is
//	                 full and another goroutine is sending, which never blocks
//	Registry.mu      leaf: only the onChange callback (a gauge) runs under it
//	ServeAdmin's mu  leaf: guards the set of admin connections
//
// No lock is held while a datagram is sent or a handler runs.
//
// # Membership seam
//
// Registry (membership) and the outbox's sendGroup (delivery to a
// snapshot, fanout.go) are the only places that know where members are. A multi-node relay replaces these
// two behind the same methods; handlers do not change.
package relay
