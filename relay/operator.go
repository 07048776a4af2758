package relay

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// The operator's state: bans, mutes, the lockdown and the rooms' settings
// the operator set, one OperatorRecord each in Config.Operator (seam.go).
//
//   - New loads every record and applies it before the rooms of the config
//     file, which win for the settings they state (Server.fileRoom).
//   - A change (an admin command, SetTopic, ConfigureRoom) is written to
//     the store first, under no lock, then applied with the revision the
//     store gave it (Server.opChange). A store that fails is logged and
//     the change is applied anyway, on this relay only: the caller gets
//     ErrNotStored.
//   - While it serves, the relay applies the changes made after its Load
//     (Watch, Server.applyRecord): those of other relays, and the echoes
//     of its own. Each record's changes are applied in revision order, and a
//     change watched while this relay has a change of the same record in
//     flight waits for it (opState), so an echo never repeats a kick or a
//     topic notice, and the last change the store made is the one in
//     force on every relay.
//
// Without a store (Config.Operator nil) every change is applied at once,
// as before; nothing here runs on the datagram path.

// The record values, as JSON. A ban or mute keeps its end in
// OperatorRecord.Expires.
type (
	banValue struct {
		Target string    `json:"target"` // as `ban` takes it: a name, an IP or a prefix
		Reason string    `json:"reason,omitempty"`
		By     string    `json:"by,omitempty"`
		Set    time.Time `json:"set"`
	}
	muteValue struct {
		Name string    `json:"name"`
		Room string    `json:"room,omitempty"` // "" relay-wide
		By   string    `json:"by,omitempty"`
		Set  time.Time `json:"set"`
	}
	lockdownValue struct {
		By  string    `json:"by,omitempty"`
		Set time.Time `json:"set"`
	}
	// roomValue is what the operator set on a room: `relay admin topic`
	// sets the topic, ConfigureRoom all three. A field present replaces
	// the room's; an absent one leaves it to the config file.
	roomValue struct {
		Name  string  `json:"name"`
		Topic *string `json:"topic,omitempty"`
		Limit *int    `json:"limit,omitempty"`
		Key   *string `json:"key,omitempty"`
	}
)

const lockdownKey = "relay"

// opKey names one record.
type opKey struct{ kind, key string }

func banKey(b banEntry) opKey {
	if b.kind == BanName {
		return opKey{RecordBan, "name " + b.key}
	}
	return opKey{RecordBan, "addr " + b.prefix.String()}
}

// banOfKey is the ban a ban record's key names (enough to lift it).
func banOfKey(key string) (banEntry, bool) {
	what, v, _ := strings.Cut(key, " ")
	switch what {
	case "name":
		return banEntry{kind: BanName, key: v}, v != ""
	case "addr":
		p, err := netip.ParsePrefix(v)
		kind := BanCIDR
		if p.IsSingleIP() {
			kind = BanIP
		}
		return banEntry{kind: kind, prefix: p}, err == nil
	}
	return banEntry{}, false
}

func muteRecordKey(nameKey, roomKey string) opKey {
	return opKey{RecordMute, nameKey + " " + roomKey}
}

// opState is the relay's side of Config.Operator.
type opState struct {
	store OperatorStore // nil: nothing is stored
	log   *zap.Logger

	loaded uint64 // the store's revision as of New's Load: Serve watches from there

	mu      sync.Mutex           // protects the fields below; taken before moderation.mu and room.mu, never held while the store is asked
	applied map[opKey]uint64     // the revision of the last change applied, per record
	rooms   map[string]roomValue // what the operator set on each room, by compare key
	busy    map[opKey]int        // local changes between their store call and their apply
	held    map[opKey]heldChange // the newest change watched of a busy record, applied when it is no longer busy
}

// heldChange is a watched change waiting for a local one.
type heldChange struct {
	rec     OperatorRecord
	deleted bool
}

func newOpState(store OperatorStore, log *zap.Logger) *opState {
	return &opState{
		store:   store,
		log:     log,
		applied: make(map[opKey]uint64),
		rooms:   make(map[string]roomValue),
		busy:    make(map[opKey]int),
		held:    make(map[opKey]heldChange),
	}
}

// put stores v as the record k, ending at expires (zero: never), and
// returns the change's revision: 0 without a store. A failure is logged
// and returned wrapped in ErrNotStored.
func (o *opState) put(k opKey, expires time.Time, v any) (uint64, error) {
	if o.store == nil {
		return 0, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return 0, o.failed(k, err)
	}
	rev, err := o.store.Put(OperatorRecord{Kind: k.kind, Key: k.key, Expires: expires, Value: b})
	if err != nil {
		return 0, o.failed(k, err)
	}
	return rev, nil
}

// del deletes the record k, as put stores it.
func (o *opState) del(k opKey) (uint64, error) {
	if o.store == nil {
		return 0, nil
	}
	rev, err := o.store.Delete(k.kind, k.key)
	if err != nil {
		return 0, o.failed(k, err)
	}
	return rev, nil
}

func (o *opState) failed(k opKey, err error) error {
	o.log.Error("operator change not stored: in force on this relay until it stops",
		zap.String("kind", k.kind), zap.String("key", k.key), zap.Error(err))
	return fmt.Errorf("%w: %w", ErrNotStored, err)
}

// room returns what the operator set on the room with compare key key.
func (o *opState) room(key string) roomValue {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rooms[key]
}

// newerLocked reports whether a change of k with revision rev is to be
// applied (rev 0, a change the store did not number, always is), and
// records rev. o.mu must be held.
func (o *opState) newerLocked(k opKey, rev uint64) bool {
	if rev == 0 {
		return true
	}
	if rev <= o.applied[k] {
		return false
	}
	o.applied[k] = rev
	return true
}

// watched applies a change of k from the store (Load or Watch) with apply,
// under o.mu, unless a newer one is applied; while a local change of k is
// in flight it is held instead, for that change's end. It reports whether
// apply ran.
func (o *opState) watched(k opKey, rec OperatorRecord, deleted bool, apply func()) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.busy[k] > 0 {
		if h, ok := o.held[k]; !ok || rec.Rev > h.rec.Rev {
			o.held[k] = heldChange{rec: rec, deleted: deleted}
		}
		return false
	}
	if !o.newerLocked(k, rec.Rev) {
		return false
	}
	apply()
	return true
}

// opChange makes one local change of the record k: store asks the store
// (put or del; under no lock), then apply, under o.mu, puts the change in
// force unless a newer change of k is in force already. applied reports
// whether apply ran; err is store's. The caller calls after once it has
// done what the change entails (kicks, notices): it applies a change of k
// that was watched meanwhile, if it is newer.
func (s *Server) opChange(k opKey, store func() (uint64, error), apply func()) (applied bool, after func(), err error) {
	o := s.ops
	o.mu.Lock()
	o.busy[k]++
	o.mu.Unlock()

	rev, err := store()

	o.mu.Lock()
	if applied = o.newerLocked(k, rev); applied {
		apply()
	}
	var held *heldChange
	if o.busy[k]--; o.busy[k] == 0 {
		delete(o.busy, k)
		if h, ok := o.held[k]; ok {
			delete(o.held, k)
			held = &h
		}
	}
	o.mu.Unlock()
	after = func() {}
	if held != nil {
		after = func() { s.applyRecord(held.rec, held.deleted, true) }
	}
	return applied, after, err
}

// loadOperator applies every record of the store, before the relay
// serves.
func (s *Server) loadOperator() error {
	recs, rev, err := s.ops.store.Load()
	if err != nil {
		return fmt.Errorf("relay: load the operator's state: %w", err)
	}
	for _, rec := range recs {
		s.applyRecord(rec, false, false)
	}
	s.ops.loaded = rev
	s.ops.log.Info("operator state loaded", zap.Int("records", len(recs)), zap.Uint64("rev", rev))
	return nil
}

// watchOperator applies the store's changes while the relay serves; the
// returned func stops it.
func (s *Server) watchOperator() (stop func()) {
	if s.ops.store == nil {
		return func() {}
	}
	stop, err := s.ops.store.Watch(s.ops.loaded, func(rec OperatorRecord, deleted bool) { s.applyRecord(rec, deleted, true) })
	if err != nil {
		s.log.Error("cannot watch the operator's state: what other relays change applies here after a restart", zap.Error(err))
		return func() {}
	}
	return stop
}

// applyRecord puts a record from the store in force (deleted: lifts it).
// live, once the relay serves, also does what the change entails: a ban
// removes who it refuses, a new topic is announced. A record the relay
// cannot read is logged and skipped; an expired one is lifted.
func (s *Server) applyRecord(rec OperatorRecord, deleted, live bool) {
	k := opKey{rec.Kind, rec.Key}
	gone := deleted || expired(rec.Expires, s.cfg.Now())
	bad := func(err error) {
		s.ops.log.Warn("operator record skipped", zap.String("kind", rec.Kind), zap.String("key", rec.Key),
			zap.Uint64("rev", rec.Rev), zap.ByteString("value", rec.Value), zap.Error(err))
	}
	var applied bool
	switch rec.Kind {
	case RecordBan:
		if gone {
			t, ok := banOfKey(rec.Key)
			if !ok {
				bad(ErrBadBanTarget)
				return
			}
			applied = s.ops.watched(k, rec, deleted, func() { s.mod().unban(t) })
			break
		}
		var v banValue
		if err := json.Unmarshal(rec.Value, &v); err != nil {
			bad(err)
			return
		}
		b, err := parseBanTarget(v.Target)
		if err == nil && banKey(b) != k {
			err = fmt.Errorf("target %q under key %q", v.Target, rec.Key)
		}
		if err != nil {
			bad(err)
			return
		}
		b.reason, b.by, b.set, b.expires = v.Reason, v.By, v.Set, rec.Expires
		if applied = s.ops.watched(k, rec, deleted, func() { s.mod().ban(b) }); applied && live {
			removed := s.removeBanned(b)
			s.ops.log.Info("ban from the store", zap.String("target", b.target), zap.Int("removed", removed))
			return
		}
	case RecordMute:
		if gone {
			nameKey, roomKey, _ := strings.Cut(rec.Key, " ")
			applied = s.ops.watched(k, rec, deleted, func() { s.mod().unmute(nameKey, roomKey) })
			break
		}
		var v muteValue
		if err := json.Unmarshal(rec.Value, &v); err != nil {
			bad(err)
			return
		}
		e := muteEntry{by: v.By, set: v.Set, expires: rec.Expires}
		var err error
		if e.name, e.nameKey, err = wire.CanonicalName(v.Name); err == nil && v.Room != "" {
			e.room, e.roomKey, err = wire.CanonicalRoom(v.Room)
		}
		if err == nil && muteRecordKey(e.nameKey, e.roomKey) != k {
			err = fmt.Errorf("mute of %q in %q under key %q", v.Name, v.Room, rec.Key)
		}
		if err != nil {
			bad(err)
			return
		}
		applied = s.ops.watched(k, rec, deleted, func() { s.mod().mute(e) })
	case RecordLockdown:
		applied = s.ops.watched(k, rec, deleted, func() { s.mod().setLockdown(!gone) })
	case RecordRoom:
		if gone { // the room stays as it is until the relay restarts
			applied = s.ops.watched(k, rec, deleted, func() { delete(s.ops.rooms, rec.Key) })
			break
		}
		var v roomValue
		err := json.Unmarshal(rec.Value, &v)
		var key string
		if err == nil {
			_, key, err = wire.CanonicalRoom(v.Name)
		}
		if err == nil && key != rec.Key {
			err = fmt.Errorf("room %q under key %q", v.Name, rec.Key)
		}
		if err == nil && v.Topic != nil {
			err = wire.CheckText(*v.Topic)
		}
		if err != nil {
			bad(err)
			return
		}
		r, err := s.keptRoom(v.Name)
		if err != nil {
			s.ops.log.Warn("room of the operator's state not opened", zap.String("room", v.Name), zap.Error(err))
			return
		}
		var old string
		if applied = s.ops.watched(k, rec, deleted, func() { old = s.setRoomLocked(r, v) }); applied && live &&
			v.Topic != nil && *v.Topic != old {
			s.announceTopic(r, *v.Topic)
		}
	default:
		s.ops.log.Debug("operator record of an unknown kind skipped", zap.String("kind", rec.Kind), zap.String("key", rec.Key))
		return
	}
	if applied && live {
		s.ops.log.Info("operator change from the store", zap.String("kind", rec.Kind), zap.String("key", rec.Key), zap.Bool("lifted", gone))
	}
}

// setRoomLocked makes v what the operator set on r, and applies each
// field v has. It returns r's topic before. s.ops.mu must be held.
func (s *Server) setRoomLocked(r *room, v roomValue) (oldTopic string) {
	s.ops.rooms[r.key] = v
	r.mu.Lock()
	defer r.mu.Unlock()
	oldTopic = r.set.topic
	if v.Topic != nil {
		r.set.topic = *v.Topic
	}
	if v.Limit != nil {
		r.set.limit = *v.Limit
	}
	if v.Key != nil {
		r.set.key = *v.Key
	}
	r.set.configured = true
	return oldTopic
}

// setRoom changes what the operator set on room (created and kept if it
// does not exist): change gets a copy of the room's record to edit. It
// stores the record, applies it, and returns the room, its topic before,
// and whether the change is in force (a newer one from the store may have
// won); the error is ErrNotStored's. The caller calls after once it has
// announced the change.
func (s *Server) setRoom(room string, change func(v *roomValue)) (r *room, oldTopic string, applied bool, after func(), err error) {
	r, err = s.keptRoom(room)
	if err != nil {
		return nil, "", false, func() {}, err
	}
	k := opKey{RecordRoom, r.key}
	var v roomValue
	applied, after, err = s.opChange(k, func() (uint64, error) {
		v = s.ops.room(r.key)
		v.Name = r.name
		change(&v)
		return s.ops.put(k, time.Time{}, v)
	}, func() { oldTopic = s.setRoomLocked(r, v) })
	return r, oldTopic, applied, after, err
}
