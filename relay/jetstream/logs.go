package jetstream

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// LogOptions configures Logs. The zero value of every field but History
// has a default.
type LogOptions struct {
	// History is how many events each room keeps (its stream's MaxMsgs);
	// at least 1.
	History int
	// MaxAge drops events older than this; 0 keeps them until History
	// pushes them out.
	MaxAge time.Duration
	// Cache is how many recent lines of each room are kept in memory
	// (default min(History, 4096)).
	Cache int
	// Storage is the streams' storage (default file).
	Storage jetstream.StorageType
	// Replicas of each stream (default 1).
	Replicas int
	// Prefix of the stream names (default "CHATRELAY_ROOM_") and of
	// their subjects (lower case, dots instead of the last "_").
	Prefix string
	// Timeout of each request to the server (default 5s).
	Timeout time.Duration
	// Shared says that other relays append to these logs too: the logs
	// Open returns then implement relay.RoomFollower, so that the relay
	// hands its members the others' events. A relay alone (--data-dir)
	// needs no such following: every event is its own.
	Shared bool
	// Heartbeat is how often the server that holds a room's follower
	// (its ordered consumer, placed on any of the stream's servers, not
	// necessarily the one this relay is connected to) says it is alive
	// while it has nothing to hand over. After two missed heartbeats the
	// follower is recreated, on a server that is up, from the event after
	// the last it handed over. Default 2s: when that server dies the
	// room's members on this relay get nothing for about 4 s (with
	// nats.go's own default, 5 s, it was 10 s); the price is one small
	// message every 2 s for each room followed while the room is quiet. A
	// shorter one costs more, and on a loaded relay a late heartbeat
	// recreates a follower for nothing.
	Heartbeat time.Duration
	// Local, when not nil, opens the logs of per-session inboxes (names
	// starting with wire.Inbox) instead of a stream each: a session, and
	// so its inbox, does not outlive the relay that holds it, and a
	// stream per login would pile up in the store. Default: streams.
	Local relay.RoomLogs
}

// errRecentFailure is an append refused at once because the last one to
// its room failed less than failFast ago.
var errRecentFailure = fmt.Errorf("jetstream: %w: the room's last append failed a moment ago", relay.ErrUnavailable)

// epochKey is the stream metadata key that holds a room's epoch.
const epochKey = "chatrelay_epoch"

// Logs is relay.RoomLogs on JetStream.
type Logs struct {
	js jetstream.JetStream
	o  LogOptions
}

var (
	_ relay.RoomLogs     = (*Logs)(nil)
	_ relay.RoomFollower = sharedLog{}
	_ relay.OnceAppender = (*roomLog)(nil)
)

// NewLogs returns Logs on js.
func NewLogs(js jetstream.JetStream, o LogOptions) (*Logs, error) {
	if o.History < 1 {
		return nil, fmt.Errorf("jetstream: history %d: must be at least 1", o.History)
	}
	if o.MaxAge < 0 {
		return nil, fmt.Errorf("jetstream: max age %v: must not be negative", o.MaxAge)
	}
	if o.Cache <= 0 {
		o.Cache = min(o.History, 4096)
	}
	o.Cache = min(o.Cache, o.History)
	if o.Storage == 0 {
		o.Storage = jetstream.FileStorage
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Prefix == "" {
		o.Prefix = "CHATRELAY_ROOM_"
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 2 * time.Second
	}
	if o.Heartbeat >= jetstream.DefaultExpires/2 {
		return nil, fmt.Errorf("jetstream: heartbeat %v: must be under %v (half a pull's expiry)", o.Heartbeat, jetstream.DefaultExpires/2)
	}
	return &Logs{js: js, o: o}, nil
}

// maxHexRoom is the longest room name (in bytes) whose stream is named by
// its hex; longer ones are named by a hash (stream names are at most 255
// characters).
const maxHexRoom = 96

// StreamName returns the stream (and the token of its subject) that holds
// room: the hex of its compare key (wire.CanonicalRoom: "Dev" and "ＤＥＶ"
// are one room, whichever name created it), so that any name is a valid
// stream name and distinct rooms stay distinct; a long key is a SHA-256
// under "H", which hex never starts with.
func (l *Logs) StreamName(room string) (stream, subject string) {
	if !strings.HasPrefix(room, wire.Inbox) {
		if _, key, err := wire.CanonicalRoom(room); err == nil {
			room = key
		}
	}
	tok := hex.EncodeToString([]byte(room))
	if len(room) > maxHexRoom {
		sum := sha256.Sum256([]byte(room))
		tok = "H" + hex.EncodeToString(sum[:])
	}
	return l.o.Prefix + tok, "chatrelay.room." + tok
}

func (l *Logs) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), l.o.Timeout)
}

// Open opens room's stream, creating it with a new epoch the first time,
// and bringing its limits to the options' (History, MaxAge).
func (l *Logs) Open(room string) (relay.RoomLog, error) {
	if l.o.Local != nil && strings.HasPrefix(room, wire.Inbox) {
		return l.o.Local.Open(room)
	}
	if down(l.js) {
		return nil, errDown
	}
	name, subject := l.StreamName(room)
	ctx, cancel := l.ctx()
	defer cancel()
	dup := 2 * time.Minute
	if l.o.MaxAge > 0 {
		dup = min(dup, l.o.MaxAge)
	}
	want := jetstream.StreamConfig{
		Name:        name,
		Description: "chatrelay room " + room,
		Subjects:    []string{subject},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxMsgs:     int64(l.o.History),
		MaxAge:      l.o.MaxAge,
		Storage:     l.o.Storage,
		Replicas:    l.o.Replicas,
		Duplicates:  dup,
		AllowDirect: true,
		Metadata:    map[string]string{epochKey: randomHex(4)},
	}
	var (
		st  jetstream.Stream
		err error
	)
	for range 3 {
		st, err = l.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = l.js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue // another node created it first: take its epoch
			}
		}
		break
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: open room %q (stream %s): %w: %w", room, name, relay.ErrUnavailable, err)
	}
	cfg := st.CachedInfo().Config
	epoch := cfg.Metadata[epochKey]
	if epoch == "" {
		return nil, fmt.Errorf("jetstream: stream %s has no %s in its metadata: not a chatrelay room", name, epochKey)
	}
	if cfg.MaxMsgs != want.MaxMsgs || cfg.MaxAge != want.MaxAge || cfg.Duplicates != want.Duplicates {
		cfg.MaxMsgs, cfg.MaxAge, cfg.Duplicates = want.MaxMsgs, want.MaxAge, want.Duplicates
		if st, err = l.js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("jetstream: room %q: new limits for stream %s: %w", room, name, err)
		}
	}
	rl := &roomLog{
		logs:    l,
		stream:  st,
		subject: subject,
		epoch:   epoch,
		latest:  st.CachedInfo().State.LastSeq,
		cache:   make([]cached, l.o.Cache),
	}
	if l.o.Shared {
		return sharedLog{rl}, nil
	}
	return rl, nil
}

// sharedLog is a room's log that other relays append to as well.
type sharedLog struct{ *roomLog }

// cached is one recent line.
type cached struct {
	seq  uint64
	at   time.Time // when it was appended or fetched (MaxAge)
	line []byte
}

// roomLog is relay.RoomLog on one stream.
type roomLog struct {
	logs    *Logs
	stream  jetstream.Stream
	subject string
	epoch   string

	mu     sync.Mutex // protects latest, cache
	latest uint64     // the highest seq appended or found at open
	cache  []cached   // cache[seq % len]: recent lines

	// failedUntil (unix nanoseconds) is set when an append fails: until
	// then appends fail at once, so that the chats queued behind one that
	// waited out the request timeout (the stream electing a leader) are
	// refused in microseconds instead of each waiting as long.
	failedUntil atomic.Int64
}

// failFast is how long appends to a room fail at once after one failed.
const failFast = time.Second

// Append publishes f (without seq and epoch, which are the stream's) and
// encodes it with the seq the server gave it.
func (l *roomLog) Append(f wire.Frame) (uint64, []byte, error) {
	seq, line, _, err := l.AppendOnce(f, "")
	return seq, line, err
}

// AppendOnce is Append with a message id (Nats-Msg-Id; "" for none): the
// same id within the stream's duplicate window (2 minutes, at most MaxAge)
// is stored once, on whichever node it is appended, and returns the first
// copy's seq and line with dup true.
func (l *roomLog) AppendOnce(f wire.Frame, id string) (uint64, []byte, bool, error) {
	if down(l.logs.js) {
		return 0, nil, false, errDown
	}
	if time.Now().UnixNano() < l.failedUntil.Load() {
		return 0, nil, false, errRecentFailure
	}
	f.Seq, f.Epoch = 0, ""
	stored := wire.AppendFrame(nil, &f)
	var opts []jetstream.PublishOpt
	if id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	ctx, cancel := l.logs.ctx()
	defer cancel()
	ack, err := l.logs.js.Publish(ctx, l.subject, stored, opts...)
	if err != nil {
		l.failedUntil.Store(time.Now().Add(failFast).UnixNano())
		return 0, nil, false, fmt.Errorf("jetstream: append to %s: %w: %w", l.subject, relay.ErrUnavailable, err)
	}
	if ack.Duplicate {
		lines, _, _ := l.Range(ack.Sequence, ack.Sequence)
		if len(lines) == 1 {
			return ack.Sequence, lines[0], true, nil
		}
		// The first is gone already: this one is as it would have been.
	}
	f.Seq, f.Epoch = ack.Sequence, l.epoch
	line := wire.AppendFrame(make([]byte, 0, len(stored)+32), &f)
	l.mu.Lock()
	l.latest = max(l.latest, ack.Sequence)
	l.putLocked(ack.Sequence, line)
	l.mu.Unlock()
	return ack.Sequence, line, ack.Duplicate, nil
}

// putLocked caches line as seq's unless the slot holds a newer one.
func (l *roomLog) putLocked(seq uint64, line []byte) {
	c := &l.cache[seq%uint64(len(l.cache))]
	if c.seq > seq {
		return
	}
	*c = cached{seq: seq, at: time.Now(), line: line}
}

// cachedLocked returns seq's line if it is cached and still held.
func (l *roomLog) cachedLocked(seq uint64, now time.Time) []byte {
	c := l.cache[seq%uint64(len(l.cache))]
	if c.seq != seq {
		return nil
	}
	if age := l.logs.o.MaxAge; age > 0 && now.Sub(c.at) >= age {
		return nil // may be gone from the stream: ask it
	}
	return c.line
}

func (l *roomLog) Epoch() string { return l.epoch }

func (l *roomLog) Latest() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.latest
}

// Range serves the cached tail from memory and fetches older events from
// the stream. Events beyond History are lost as in memory; with MaxAge,
// those the stream no longer has are lost too (always the oldest).
func (l *roomLog) Range(from, to uint64) (lines [][]byte, lostFrom, lostTo uint64) {
	now := time.Now()
	l.mu.Lock()
	if from == 0 {
		from = 1
	}
	to = min(to, l.latest)
	if from > to {
		l.mu.Unlock()
		return nil, 0, 0
	}
	if h := uint64(l.logs.o.History); l.latest > h && from < l.latest-h+1 {
		oldest := l.latest - h + 1
		lostFrom, lostTo = from, min(to, oldest-1)
		from = oldest
	}
	if from > to {
		l.mu.Unlock()
		return nil, lostFrom, lostTo
	}
	lines = make([][]byte, 0, to-from+1)
	var missing []uint64
	for seq := from; seq <= to; seq++ {
		line := l.cachedLocked(seq, now)
		if line == nil {
			missing = append(missing, seq)
		}
		lines = append(lines, line)
	}
	l.mu.Unlock()
	if len(missing) == 0 {
		return lines, lostFrom, lostTo
	}
	for _, seq := range missing {
		lines[seq-from] = l.fetch(seq)
	}
	// What the stream no longer has is its oldest: lost, as a prefix.
	held := lines[:0]
	for i, line := range lines {
		seq := from + uint64(i)
		if line == nil {
			if len(held) == 0 {
				if lostTo == 0 {
					lostFrom = seq
				}
				lostTo = seq
			}
			continue
		}
		held = append(held, line)
	}
	if len(held) == 0 {
		held = nil
	}
	return held, lostFrom, lostTo
}

// fetch reads seq from the stream and encodes it as Append did; nil if
// the stream no longer has it.
func (l *roomLog) fetch(seq uint64) []byte {
	ctx, cancel := l.logs.ctx()
	defer cancel()
	msg, err := l.stream.GetMsg(ctx, seq)
	if err != nil {
		return nil
	}
	var f wire.Frame
	if !wire.DecodeFrameInPlace(msg.Data, &f) {
		return nil // not one of ours
	}
	f.Seq, f.Epoch = msg.Sequence, l.epoch
	line := wire.AppendFrame(nil, &f)
	l.mu.Lock()
	l.putLocked(seq, line)
	l.mu.Unlock()
	return line
}

// Backlog re-encodes the held events up to upto with History set.
func (l *roomLog) Backlog(n int, upto uint64) [][]byte {
	upto = min(upto, l.Latest())
	if n <= 0 || upto == 0 {
		return nil
	}
	from := uint64(1)
	if upto >= uint64(n) {
		from = upto - uint64(n) + 1
	}
	held, _, _ := l.Range(from, upto)
	var lines [][]byte
	for _, line := range held {
		var f wire.Frame
		if !wire.DecodeFrameInPlace(line, &f) {
			continue
		}
		f.History = true
		lines = append(lines, wire.AppendFrame(nil, &f))
	}
	return lines
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("jetstream: crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// Follow reads the room's stream from after+1 with an ordered consumer
// (recreated by the client library after a gap, a reconnection or two
// missed heartbeats, so it hands over every event once, in order) and
// caches what it reads: a repair of an event another node appended is then
// served from memory too.
func (l sharedLog) Follow(after uint64, fn func(seq uint64, line []byte, behind uint64)) (func(), error) {
	ctx, cancel := l.logs.ctx()
	defer cancel()
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{l.subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    after + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: follow %s: %w: %w", l.subject, relay.ErrUnavailable, err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err != nil {
			return
		}
		seq := md.Sequence.Stream
		l.mu.Lock()
		line := l.cachedLocked(seq, time.Now())
		l.mu.Unlock()
		if line == nil {
			var f wire.Frame
			if !wire.DecodeFrameInPlace(msg.Data(), &f) {
				// Not one of ours (published on the room's subject by
				// something else): handed over as an empty notice, so
				// that the room's sequence has no hole.
				f = wire.Frame{T: wire.FrameNotice}
			}
			f.Seq, f.Epoch = seq, l.epoch
			line = wire.AppendFrame(nil, &f)
			l.mu.Lock()
			l.putLocked(seq, line)
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.latest = max(l.latest, seq)
		l.mu.Unlock()
		fn(seq, line, md.NumPending)
	}, jetstream.PullHeartbeat(l.logs.o.Heartbeat))
	if err != nil {
		return nil, fmt.Errorf("jetstream: follow %s: %w: %w", l.subject, relay.ErrUnavailable, err)
	}
	return cc.Stop, nil
}
