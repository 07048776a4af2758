package relay

import (
	"encoding/json"
	"net/netip"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// The seam: what a relay shares with other relays goes through NameDirectory,
// RoomLog and OperatorStore; what stays on this node goes through Delivery.
// The handlers know only these interfaces. The in-memory implementations
// here are the default; a multi-node relay gives New others (Config.Names,
// Config.Logs, Config.Operator), and nothing else changes.

// NameDirectory decides which session holds a name, relay-wide: on one node
// a map, on many a shared store. Names are claimed by their compare key
// (wire.CanonicalName), so "Alice" and "ＡＬＩＣＥ" are one name. An owner
// is a session's ID (Member.ID), unique across nodes.
//
// Implementations MUST be safe for concurrent use, and a claim MUST be
// atomic: of two owners claiming one key at the same instant, on any
// nodes, exactly one succeeds. A call may block for a network round trip;
// the relay never calls it with a lock held.
type NameDirectory interface {
	// Claim gives key to owner. It fails with ErrNameTaken if another owner
	// holds key; a claim by the owner that holds key succeeds again.
	Claim(key, owner string) error
	// Release gives key up if owner holds it; otherwise it does nothing.
	Release(key, owner string)
	// Lookup returns the owner of key, if any.
	Lookup(key string) (owner string, ok bool)
}

// RoomLog is one room's sequence of events and its recent history. The log
// assigns sequence numbers (1, 2, 3… with no gap) and an epoch (a new epoch
// means earlier history is gone); the relay's local fan-out then takes the
// events in that order (room.feed), so the log may live elsewhere, and no
// lock of the fan-out is held while the log is asked.
//
// Implementations MUST be safe for concurrent use.
type RoomLog interface {
	// Append makes f the room's next event: it returns the seq it gave f
	// and f, with that Seq and the log's Epoch, encoded as one frame line
	// (wire.AppendFrame, with its "\n"). The line is immutable and may be
	// kept; f's strings may alias a buffer that is reused once Append
	// returns, so the log copies what it keeps. (f is passed by value so
	// that the hot path allocates nothing for it.)
	Append(f wire.Frame) (seq uint64, line []byte, err error)
	// Epoch identifies this log's history.
	Epoch() string
	// Latest returns the seq of the latest event, 0 before the first.
	Latest() uint64
	// Range returns the events from..to (inclusive, clamped to what exists)
	// that the log still holds, oldest first, and the part of the range it
	// no longer holds (lostFrom..lostTo; lostTo == 0 if none).
	Range(from, to uint64) (lines [][]byte, lostFrom, lostTo uint64)
	// Backlog returns up to n of the events up to seq upto, oldest first,
	// marked as history (wire.Frame.History).
	Backlog(n int, upto uint64) [][]byte
}

// RoomLogs opens the log of a room by name: the same name gives the same
// room's log, on every node that shares the store.
type RoomLogs interface {
	Open(room string) (RoomLog, error)
}

// OperatorStore keeps what the operator set: bans, mutes, the lockdown and
// the rooms' settings (operator.go). The relay loads every record when it
// starts (New), writes each change through the store before it applies it,
// and, while it serves, applies the changes it watches, so that a store
// several relays share carries a ban set on one relay to all of them.
// Records are few (one per ban, mute, room or lockdown) and change only on
// an operator's command, never on a datagram.
//
// A record is named by its Kind and Key; its Value is the relay's JSON,
// which the store gives back as equal JSON. Every change (a Put or a
// Delete) gets a revision from the store, higher than the revision of
// every change the store made before it: a relay applies the changes of
// one record in the store's order, whether they reach it through its own
// call or through Watch, and ignores one older than what it has applied.
// A record whose Expires has passed is in force nowhere: Load leaves it
// out (by the store's clock; the relay also checks by its own), and the
// store may delete it.
//
// Implementations MUST be safe for concurrent use. A call may block for a
// network round trip; the relay never calls one with a lock held.
type OperatorStore interface {
	// Load returns every record in force, each with its Rev, and the
	// store's revision as of the load: every change after it has a higher
	// one.
	Load() (recs []OperatorRecord, rev uint64, err error)
	// Put stores r under r.Kind and r.Key (r.Rev is ignored), replacing
	// the record there, and returns the change's revision.
	Put(r OperatorRecord) (rev uint64, err error)
	// Delete removes the record of kind and key and returns the change's
	// revision; deleting a record that does not exist is not an error.
	Delete(kind, key string) (rev uint64, err error)
	// Watch calls fn with every change whose revision is above after (as
	// Load returned it), made by any holder of the store, in the store's
	// order, until stop is called; of a record changed more than once
	// before Watch was called, it may give the latest change alone.
	// deleted reports a Delete: r then has only Kind, Key and Rev. fn is
	// called from one goroutine at a time and may hold the watch up while
	// it runs; stop waits for a call in progress to return and MUST NOT
	// be called from fn.
	Watch(after uint64, fn func(r OperatorRecord, deleted bool)) (stop func(), err error)
}

// OperatorRecord is one thing the operator set, as an OperatorStore keeps
// it.
type OperatorRecord struct {
	Kind    string          // RecordBan, RecordMute, RecordRoom or RecordLockdown: lower-case letters
	Key     string          // which one of its Kind: not empty, any bytes
	Expires time.Time       // when it ends (a ban or mute --for); zero: never
	Value   json.RawMessage // the relay's JSON (operator.go)
	Rev     uint64          // the revision of the change that wrote it: set by Load and Watch
}

// Kinds of operator record (OperatorRecord.Kind), and their keys.
const (
	RecordBan      = "ban"      // Key "name KEY" (the name's compare key) or "addr PREFIX"
	RecordMute     = "mute"     // Key "NAMEKEY ROOMKEY" (ROOMKEY "" for relay-wide)
	RecordRoom     = "room"     // Key the room's compare key
	RecordLockdown = "lockdown" // Key "relay": present while the lockdown is on
)

// Delivery sends to the members on this node; it is the only code that
// reaches a socket. Every method returns without waiting for I/O to other
// members; none may be called with a lock of the relay held.
type Delivery interface {
	// Send sends b, one datagram, to m, after every room event queued for m
	// before it. b MUST NOT change afterwards.
	Send(m *Member, b []byte)
	// SendFrames sends frame lines to the v2 member m, packed into as few
	// datagrams as m's send budget allows, after what is queued for m.
	SendFrames(m *Member, lines [][]byte)
	// Queue queues b for m behind what is queued for it, without sending:
	// the next Flush sends it. It may be called under a room's feed lock.
	Queue(m *Member, b []byte)
	// QueueFrames is SendFrames as Queue does it: queued, not sent, and it
	// may be called under a room's feed lock.
	QueueFrames(m *Member, lines [][]byte)
	// Reply sends b to an address that holds no session.
	Reply(to netip.AddrPort, local netip.Addr, b []byte)
	// Publish queues a sequenced room event for e.Members. A room's events
	// MUST be published in sequence order.
	Publish(e Event)
	// Flush sends what is queued. A broadcast from outside a handler (the
	// admin socket, the sweeper) MUST be followed by a Flush.
	Flush()
}

// Event is one room event on its way to this node's members.
type Event struct {
	Members []*Member // the room's members when it was sent: an immutable snapshot
	V2      []byte    // the frame line, for v2 members (the sender too: its echo is its ack)
	Classic []byte    // the classic line, for classic members
	Except  *Member   // a classic member that gets no classic line (the chat's sender)
}

// NewMemoryLogs returns the in-memory RoomLogs the relay uses by default:
// each room keeps its last ring events (at least 16), and a new process
// starts every room afresh with a new epoch.
func NewMemoryLogs(ring int) RoomLogs { return memLogs{ring: max(ring, 16)} }

// NewMemoryDirectory returns the in-memory NameDirectory the relay uses by
// default: the names of one process.
func NewMemoryDirectory() NameDirectory { return newMemDirectory() }

// RoomFollower is a RoomLog that other relays append to as well: Follow
// hands this node the room's events in sequence order, whichever node
// appended them (this one's own included), so that the local fan-out
// reaches this node's members with the one order every node sees. A log
// that only this process appends to (the in-memory one, an inbox) does not
// implement it.
type RoomFollower interface {
	// Follow calls fn with every event after seq after, in order, each
	// once, from one goroutine, until stop is called; behind is how many
	// events the log held after this one when it was handed over (the
	// node's lag). fn MUST NOT block for long. stop waits for no call in
	// progress to end; after it returns, fn is called at most once more.
	Follow(after uint64, fn func(seq uint64, line []byte, behind uint64)) (stop func(), err error)
}

// OnceAppender is a RoomLog that stores an event once per id: the same id
// appended again (a chat retransmitted after its ack was lost, to this
// relay after a restart or to another one after a failover) returns the
// first one's seq and line, with dup true, and stores nothing. The relay
// uses it for v2 chats, with an id of the session and the client's id.
type OnceAppender interface {
	AppendOnce(f wire.Frame, id string) (seq uint64, line []byte, dup bool, err error)
}

// InProcess is implemented by a NameDirectory or RoomLogs whose calls
// never wait on anything outside this process (the memory stores). Where
// the names and room logs are InProcess and there is no SessionStore or
// Cluster, a handler never waits, and the relay wakes one worker per read
// batch; else every sender's lane may have a worker of its own, so that
// one sender's wait never holds up another's datagrams.
type InProcess interface {
	InProcess() bool
}

// inProcess reports whether store says it is InProcess.
func inProcess(store any) bool {
	p, ok := store.(InProcess)
	return ok && p.InProcess()
}

// SessionRecord is what a relay needs to carry a session on that another
// process began: after a restart (--data-dir), or on another node when
// the one that held it died (--nats).
type SessionRecord struct {
	ID    string   `json:"id"`              // Member.ID: the owner of its name
	Name  string   `json:"name"`            // display form
	Proto string   `json:"proto"`           // ProtoClassic or ProtoV2
	Rev   uint32   `json:"rev,omitempty"`   // v2 revision
	Addr  string   `json:"addr"`            // the member's address (netip.AddrPort)
	Local string   `json:"local,omitempty"` // the relay address it sent to, if known
	Rooms []string `json:"rooms"`           // the rooms it is in, main included, in join order
	Node  string   `json:"node,omitempty"`  // the relay that holds it (Config.Node)
}

// SessionStore keeps the sessions where a restarted relay, or another
// node, finds them. A v2 session is found by its token (which the store
// may keep only hashed), a classic one by its address at start.
//
// Implementations MUST be safe for concurrent use. Calls may block for a
// network round trip; the relay never makes them with a lock held, and
// never on the chat path (only at login, join, part, resume and removal).
type SessionStore interface {
	// Put writes the session (token "" for classic), replacing what it
	// held before: this process holds it from now on.
	Put(rec SessionRecord, token string) error
	// Delete forgets the session id (its token, "" for classic) if this
	// process still holds it.
	Delete(id, token string)
	// ByToken returns the v2 session whose token is token.
	ByToken(token string) (rec SessionRecord, ok bool, err error)
	// Classic returns the classic sessions stored by node ("": by any),
	// for a relay that starts again to take its members back.
	Classic(node string) ([]SessionRecord, error)
}

// NewMemoryOperatorStore returns an OperatorStore in memory: what the
// Servers of one process that share it set, lost at exit. (Config.Operator
// nil keeps the operator's state in the Server alone, as fast.)
func NewMemoryOperatorStore() OperatorStore { return newMemOperator() }

// Cluster is what the relays sharing a store tell each other beyond the
// rooms' logs and the names: which sessions each holds (for who, the room
// list and the timeouts of members whose relay died), and the direct
// messages to their members. A relay alone has none (Config.Cluster nil).
//
// Implementations MUST be safe for concurrent use. SendDM may block for a
// network round trip; the relay never calls it with a lock held.
type Cluster interface {
	// WatchSessions calls fn with every session stored by any relay (those
	// stored already first), each time it is written, and with gone true
	// once it ends: deleted by its relay (which told its rooms), or, with
	// expired true, not refreshed for a whole lease (its relay died and no
	// relay took the session over). fn is called from one goroutine, in
	// the store's order, until stop is called.
	WatchSessions(fn func(rec SessionRecord, gone, expired bool)) (stop func(), err error)
	// SendDM hands dm to the relay called node, which holds its recipient,
	// and returns its answer: "" when delivered, else a wire code
	// (wire.CodeNoSuchMember, wire.CodeUnsupported).
	SendDM(node string, dm DirectMessage) (code string, err error)
	// ServeDMs answers the direct messages sent to node with fn (its
	// answer as SendDM's) until stop is called.
	ServeDMs(node string, fn func(DirectMessage) string) (stop func(), err error)
}

// DirectMessage is a direct message on its way between relays.
type DirectMessage struct {
	From string `json:"from"` // the sender's name
	To   string `json:"to"`   // the recipient's name
	ID   uint64 `json:"id"`   // the sender's message id
	Text string `json:"text"`
}
