// Package relay is chatrelay's engine: it turns datagrams from members into
// replies and fan-out. It speaks the protocol of package wire (classic text
// and v2 frames, docs/PROTOCOL.md), keeps this node's sessions, and serves
// the admin requests; it knows nothing of goroutine pools or
// Prometheus, which it reaches through the Executor and Observer interfaces
// (cmd/relay wires in pool and metrics).
//
// # The datagram path
//
//  1. Server.readLoop reads datagrams, up to 64 per recvmmsg (with the local
//     address each was sent to, IP_PKTINFO), drops and counts empty or
//     oversize ones and, with flood control on, those over a source's
//     rate, taking fresh buffers in their place. It never answers garbage.
//     On Linux the socket is out of Go's poller (udpio.NewOpts) and the
//     reader, locked to its thread, sleeps in recvmmsg itself
//     (MSG_WAITFORONE on the socket the relay made blocking) when the
//     socket is empty: one system call per batch. With --readers N there
//     are N sockets in an SO_REUSEPORT group, one reader each; the kernel
//     keeps each sender on one socket.
//  2. Where handlers never wait (the default: rooms, names and sessions in
//     this process), the reader handles the batch itself, datagram by
//     datagram in order (steps 4-5), while they are warm in its cache, and
//     up to Workers Executor tasks send the fan-out (flushers.go), as
//     nats-server's read loop processes what it read and its write loops
//     send. A quiet batch (at most 4 datagrams that the reader waited
//     500 µs for, with no task sending) leaves at once from the reader
//     (fanout.FlushQuiet), as a one-goroutine loop would send it. When the
//     fan-out is behind, publishing waits for it (journalLimit), the reader
//     reads no more meanwhile, and the backlog waits in the socket's buffer
//     (16 MiB); what the kernel drops beyond it is counted (rcvbuf).
//  3. Where handlers may wait on the network (a store behind NATS or
//     --data-dir: any name directory or room log that is not InProcess),
//     the reader only hands the batch to the dispatcher, in one step. The
//     dispatcher appends each datagram to its sender's lane; a full queue
//     (all senders, or this sender) drops and counts it. A lane is run by
//     at most one worker (an Executor task) at a time, so each sender's
//     requests are handled in the order they arrived, and each ready lane
//     may have a worker of its own, so that one sender's wait holds up no
//     other. A worker takes a lane's backlog, handles each datagram in
//     order, and moves on to the next ready lane; it exits when none is
//     left. Handler panics are recovered per datagram.
//  4. dispatch parses the datagram and runs the row of the handler table for
//     its verb; the row's fields carry the checks (must be a member, must
//     name oneself). Garbage is counted, never answered.
//  5. A broadcast is sequenced and encoded once by its room's log
//     (RoomLog.Append), then queued, in sequence order (room.deliver), with
//     the room's snapshot of members (one atomic load, no lock), in each
//     shard's outbox (fanout.go; sixteen shards per CPU, each member in the
//     shard its address picks). The reader kicks the flushers after each
//     batch; a worker flushes when no lane waits (at low load: after each
//     datagram) or after 16 datagrams: a shard nobody is sending gets it as
//     its sender until it is empty, so at low load the event leaves at once
//     and under load the events of many batches leave together, packed for
//     v2 members into datagrams up to the send budget (larger to loopback)
//     and 64 frames. A reply to a member queues behind what was queued
//     before it. Every datagram of a flush, whatever its room, goes
//     through the shard's udpio.Batch: sendmmsg with MSG_DONTWAIT on the
//     shard's sender socket (at most 8, shared by the shards, all sending
//     from the relay's address; the reader's quiet flush sends the idle
//     shards together on one), up to 1,024 datagrams per call, so many
//     small rooms fill each call; a failing or
//     full recipient is counted and skipped, and no send can block a worker.
//
// # The seam
//
// Everything a relay shares with other relays goes through the interfaces
// of seam.go; everything that stays on this node, through Delivery:
//
//   - NameDirectory: who holds a name (claim, release, lookup). Registry
//     claims a name before it adds the session, never under its lock.
//   - RoomLog (opened per room by RoomLogs): a room's sequence, epoch and
//     history (append; range, for repair and history requests; backlog).
//     Handlers never number events. A shared log also hands each node the
//     events other nodes appended (RoomFollower, follow.go) and stores a
//     retransmitted chat once (OnceAppender).
//   - OperatorStore: what the operator set, one record each (bans, mutes,
//     the lockdown, rooms' settings): loaded by New, written by each admin
//     change before it applies, watched while serving so that a change
//     made on one relay applies on all (operator.go). Never on the
//     datagram path: admit and mutedIn read the node's copy (moderation).
//   - SessionStore: sessions beyond this process (sessions.go), so that a
//     v2 client resumes after a crash or on another node and classic
//     members are taken back at start; and Cluster, what the relays
//     sharing a store tell each other (the sessions each holds, direct
//     messages: cluster.go). Neither is on the chat path.
//   - Delivery: sending to this node's members (send to one, reply to an
//     address, publish a room event, flush). Only fanout.go reaches a
//     socket; handlers name members, never addresses.
//
// Node-local state never crosses the seam: Registry holds this node's
// sessions (address, token, per-IP counts, recent quits), a room holds which
// of this node's members are in it, and the flood tables and outboxes are
// the node's own. The in-memory NameDirectory and RoomLog (room.go) are the
// default; Config.Names and Config.Logs take others, and nothing else
// changes. Config.Operator nil keeps the operator's state in the Server
// alone, as before.
//
// Sequencing is the log's: RoomLog.Append returns the event's seq, under no
// lock of the relay's, and room.deliver hands events to the fan-out in seq
// order (an event whose predecessor is still on its way waits in the
// room's feed), so a log that numbers events elsewhere feeds the local
// fan-out in one order on every node.
//
// # Locks
//
// Every mutex sits directly above the fields it guards. The lock order
// (A -> B: B may be taken while A is held, never the reverse):
//
//	knobs.mu         Reconfigure only (reload.go) -> Registry.mu
//	dispatcher.mu    leaf: nothing else is taken under it; handlers run without it
//	memLog.mu        leaf: Append returns before the event is delivered
//	room.feed.mu     -> fanout.mu (a room's events are published in seq order);
//	                 -> room.mu (a classic login's OK is queued and the member added in one step)
//	fanout.mu        -> outbox.mu (a direct datagram leaves at once only if its shard is idle);
//	                 a producer may wait on it only while the journal is full and
//	                 another goroutine is packing or a job is being sent, neither of which blocks
//	roomSet.mu       -> room.mu (a room is removed only while empty)
//	outbox.mu        leaf: nobody waits on it but waitIdle
//	quietSlot.mu     -> outbox.mu, fanout.mu (FlushQuiet takes a socket's idle shards
//	                 and releases their jobs); only ever TryLock'ed: it never waits
//	room.mu          -> Member.mu (a member's list of rooms)
//	Member.mu        leaf
//	room.batch.mu    leaf: a big room's gathered joins and leaves
//	pendingRooms.mu  leaf: the rooms with a batch to announce
//	v2State.mu       leaf: a v2 session's message ids
//	icmpState.mu     leaf: a classic member's ICMP strikes
//	sendLines.mu     leaf: the slab of reply datagrams
//	Registry.mu      leaf: only the onChange callback (a gauge) runs under it;
//	                 the NameDirectory is asked before or after it, never under it
//	memDirectory.mu  leaf
//	opState.mu       -> moderation.mu, room.mu: an operator record's change is
//	                 applied in revision order (operator.go); the OperatorStore
//	                 is asked before or after it, never under it
//	moderation.mu    leaf: bans and mutes (moderation.go); admit and mutedIn
//	                 take it only while someone is banned or muted
//	memOperator.mu   -> memWatch.mu (the in-memory OperatorStore)
//	ServeAdmin's mu  leaf: guards the set of admin connections
//
// No lock is held while a datagram is sent, a handler runs, or the
// NameDirectory, RoomLog or OperatorStore is asked.
package relay
