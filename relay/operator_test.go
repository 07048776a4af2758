package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/relaytest"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// wallClock is a clock that starts now: an OperatorStore ends records by
// its own clock, the relay by its own.
func wallClock() *clock { return &clock{now: time.Now().UTC().Truncate(time.Second)} }

// opRelay starts a relay on clk that keeps the operator's state in store;
// only 127.0.0.1 is exempt from a lockdown.
func opRelay(t *testing.T, clk *clock, store relay.OperatorStore, opts ...func(*relay.Config)) *relaytest.Relay {
	t.Helper()
	return relaytest.Start(t, append([]func(*relay.Config){func(c *relay.Config) {
		c.Now, c.Operator = clk.Now, store
		c.Flood = &relay.FloodSettings{Enabled: false, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	}}, opts...)...)
}

func stopRelay(t *testing.T, r *relaytest.Relay) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Server.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// Everything the operator set is in force again on a relay that starts on
// the same store: bans (with their end, reason, author and time), a mute
// in a room, the lockdown, a room's topic, limit and key. A ban that
// ended meanwhile is gone.
func TestOperatorStateSurvivesRestart(t *testing.T) {
	clk, store := wallClock(), relay.NewMemoryOperatorStore()
	r := opRelay(t, clk, store)
	adminOK(t, r, "ban mallory spamming links", "banned mallory: spamming links", "removed 0 members")
	adminOK(t, r, "ban 127.0.0.3/31 --for 1h flooding", "banned 127.0.0.2/31 for 1h: flooding", "removed 0 members")
	adminOK(t, r, "ban eve --for 10m", "banned eve for 10m", "removed 0 members")
	adminOK(t, r, "mute alice --room dev", "muted alice in dev")
	adminOK(t, r, "topic dev release 2.0", "topic of dev set")
	if err := r.Server.ConfigureRoom(relay.RoomSettings{Name: "ops", Topic: "on call", Limit: 1, Key: "k"}); err != nil {
		t.Fatal(err)
	}
	adminOK(t, r, "lockdown on", "lockdown on: new logins only from 127.0.0.1/32")
	before := bansJSON(t, r)
	stopRelay(t, r)

	clk.Advance(10 * time.Minute) // eve's ban ends while the relay is down
	r = opRelay(t, clk, store)

	admits(t, r, "mallory", "127.0.0.1", relay.LoginBanned, "you are banned: spamming links")
	loginRefused(t, r, "127.0.0.1", "mallory", "you are banned: spamming links")
	admits(t, r, "anyone", "127.0.0.3", relay.LoginBanned, "you are banned: flooding (50m left)")
	admits(t, r, "eve", "127.0.0.1", "", "")
	// before: eve, mallory, 127.0.0.2/31; after: eve's has ended, the
	// others are as they were, 10 minutes on.
	after := bansJSON(t, r)
	cidr := before[2]
	cidr.LeftSeconds -= 600
	if len(before) != 3 || len(after) != 2 || after[0] != before[1] || after[1] != cidr {
		t.Fatalf("bans after the restart %+v; before %+v", after, before)
	}
	adminOK(t, r, "lockdown", "lockdown on: new logins only from 127.0.0.1/32")
	loginRefused(t, r, "127.0.0.4", "dave", "the relay is in lockdown: no new logins")

	alice, bob := dialV2(t, r), dialV2(t, r)
	alice.login1("alice")
	bob.login1("bob")
	alice.expectT(wire.FrameJoin)
	if w, _ := alice.joinRoom("dev", ""); w.Topic != "release 2.0" {
		t.Fatalf("welcome to dev %+v, want its topic", w)
	}
	alice.sendFrames(&wire.Frame{T: wire.FrameChat, Room: "dev", ID: 1, Text: "can I talk?"})
	alice.expectError(wire.CodeMuted)
	alice.sendFrames(&wire.Frame{T: wire.FrameJoin, Room: "ops", Key: "guess"})
	alice.expectError(wire.CodeBadKey)
	if w, _ := alice.joinRoom("ops", "k"); w.Topic != "on call" {
		t.Fatalf("welcome to ops %+v, want its topic", w)
	}
	bob.sendFrames(&wire.Frame{T: wire.FrameJoin, Room: "ops", Key: "k"})
	bob.expectError(wire.CodeRoomFull)
}

// A relay changes nothing when its config file is silent: the file's
// rooms win for what they state, and keep what the operator set for the
// rest.
func TestOperatorStateUnderTheConfigFile(t *testing.T) {
	clk, store := wallClock(), relay.NewMemoryOperatorStore()
	r := opRelay(t, clk, store)
	if err := r.Server.ConfigureRoom(relay.RoomSettings{Name: "dev", Topic: "from the operator", Limit: 5}); err != nil {
		t.Fatal(err)
	}
	adminOK(t, r, "topic ops kept", "topic of ops set")
	stopRelay(t, r)

	r = opRelay(t, clk, store, func(c *relay.Config) {
		c.Rooms = []relay.RoomSettings{{Name: "dev", Topic: "from the file"}, {Name: "ops", Limit: 2}, {Name: "new"}}
	})
	got := map[string]relay.RoomInfo{}
	for _, ri := range r.Server.Rooms() {
		got[ri.Name] = ri
	}
	if dev := got["dev"]; dev.Topic != "from the file" || dev.Limit != 5 || !dev.Configured {
		t.Errorf("dev: %+v, want the file's topic and the operator's limit", dev)
	}
	if ops := got["ops"]; ops.Topic != "kept" || ops.Limit != 2 || !ops.Configured {
		t.Errorf("ops: %+v, want the operator's topic and the file's limit", ops)
	}
	if n := got["new"]; !n.Configured || n.Topic != "" || len(got) != 4 {
		t.Errorf("rooms %+v", got)
	}
}

// Relays sharing a store apply each other's changes while they run: a ban
// set on one removes the member on the other, a topic is announced in the
// room on both (once on each), an unban, a mute and the lockdown hold on
// the other.
func TestOperatorChangesApplyOnEveryRelay(t *testing.T) {
	clk, store := wallClock(), relay.NewMemoryOperatorStore()
	a, b := opRelay(t, clk, store), opRelay(t, clk, store)
	bob := dial(t, b).login("bob")
	carol := dial(t, b).login("carol")
	bob.expect("carol joined the chat room")
	onA, onB := dialV2(t, a), dialV2(t, b)
	onA.login1("alice")
	onB.login1("dora")
	bob.expect("dora joined the chat room")
	carol.expect("dora joined the chat room")
	onA.joinRoom("dev", "")
	onB.joinRoom("dev", "")

	adminOK(t, a, "ban bob spam", "banned bob: spam", "removed 0 members")
	bob.expect("Admin notice: you were removed by the administrator: banned: spam")
	bob.expect("EXIT")
	carol.expect("bob was removed by the administrator: banned: spam")
	if f := onB.expectT(wire.FrameLeave); f.From != "bob" || f.Reason != "banned: spam" {
		t.Fatalf("dora saw %+v, want bob's leave", f)
	}
	admits(t, b, "bob", "127.0.0.1", relay.LoginBanned, "you are banned: spam")

	// Two topics, one from each relay: each member sees both, in the
	// store's order, and neither twice (a relay's own change comes back
	// through the watch and changes nothing).
	adminOK(t, a, "topic dev first", "topic of dev set")
	eventually(t, "the first topic on b", func() bool { return topicOf(b, "dev") == "first" })
	adminOK(t, b, "topic dev second", "topic of dev set")
	for _, c := range []*v2c{onA, onB} {
		for _, want := range []string{"first", "second"} {
			if f := c.expectT(wire.FrameNotice); f.Room != "dev" || f.Topic != want {
				t.Fatalf("%s: notice %+v, want the topic %q", c.name, f, want)
			}
		}
	}

	adminOK(t, b, "unban bob", "unbanned bob")
	eventually(t, "the unban on a", func() bool { _, _, ok := relay.Admit(a.Server, "bob", netip.MustParseAddr("127.0.0.1")); return ok })
	adminOK(t, a, "mute dora --room dev", "muted dora in dev")
	eventually(t, "the mute on b", func() bool { _, muted := relay.MutedIn(b.Server, "dora", "dev"); return muted })
	adminOK(t, a, "lockdown on", "lockdown on: new logins only from 127.0.0.1/32")
	eventually(t, "the lockdown on b", func() bool {
		code, _, _ := relay.Admit(b.Server, "erin", netip.MustParseAddr("127.0.0.5"))
		return code == relay.LoginLockdown
	})
	adminOK(t, b, "lockdown", "lockdown on: new logins only from 127.0.0.1/32")
}

func topicOf(r *relaytest.Relay, room string) string {
	for _, ri := range r.Server.Rooms() {
		if ri.Name == room {
			return ri.Topic
		}
	}
	return ""
}

// brokenStore loads and watches, but stores nothing.
type brokenStore struct{ relay.OperatorStore }

var errBroken = errors.New("disk on fire")

func (brokenStore) Put(relay.OperatorRecord) (uint64, error) { return 0, errBroken }
func (brokenStore) Delete(string, string) (uint64, error)    { return 0, errBroken }

// A change the store fails to keep is in force on this relay, and the
// operator is told it is not stored, with the store's error.
func TestOperatorStoreFailureIsReported(t *testing.T) {
	core, logs := observer.New(zapcore.ErrorLevel)
	r := opRelay(t, wallClock(), brokenStore{relay.NewMemoryOperatorStore()}, func(c *relay.Config) { c.Logger = zap.New(core) })
	bob := dial(t, r).login("bob")
	for _, req := range []string{"ban bob", "mute alice", "unmute alice", "topic dev hello", "lockdown on"} {
		lines, final := admin(t, r, req)
		if final != relay.AdminErrPrefix+"not stored, in force on this relay until it stops: disk on fire" {
			t.Errorf("%s: %q then %q", req, lines, final)
		}
	}
	bob.expect("Admin notice: you were removed by the administrator: banned")
	admits(t, r, "bob", "127.0.0.1", relay.LoginBanned, "you are banned")
	admits(t, r, "erin", "127.0.0.5", relay.LoginLockdown, "the relay is in lockdown: no new logins")
	if topicOf(r, "dev") != "hello" {
		t.Errorf("rooms %+v, want dev with its topic", r.Server.Rooms())
	}
	if n := logs.FilterMessage("operator change not stored: in force on this relay until it stops").Len(); n != 5 {
		t.Errorf("%d failures logged, want 5", n)
	}
	if err := r.Server.SetTopic("dev", "again"); !errors.Is(err, relay.ErrNotStored) || !errors.Is(err, errBroken) ||
		!strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("SetTopic: %v", err)
	}
}

// A store that cannot be read stops the relay from starting: it would
// otherwise lift every ban.
func TestOperatorLoadFailureStopsNew(t *testing.T) {
	_, err := relay.New(relay.Config{Operator: unreadable{}})
	if !errors.Is(err, errBroken) {
		t.Fatalf("New with an unreadable store: %v", err)
	}
}

type unreadable struct{ brokenStore }

func (unreadable) Load() ([]relay.OperatorRecord, uint64, error) { return nil, 0, errBroken }

// hookStore calls onPut with the record it stored and the relay's watch
// fn before Put returns: a watch that delivers a change before the
// relay's own call has returned. Its watch delivers nothing else.
type hookStore struct {
	relay.OperatorStore
	mu    sync.Mutex // protects fn and onPut
	fn    func(relay.OperatorRecord, bool)
	onPut func(r relay.OperatorRecord, fn func(relay.OperatorRecord, bool))
}

func (h *hookStore) Watch(after uint64, fn func(relay.OperatorRecord, bool)) (func(), error) {
	h.mu.Lock()
	h.fn = fn
	h.mu.Unlock()
	return func() {}, nil
}

func (h *hookStore) Put(r relay.OperatorRecord) (uint64, error) {
	rev, err := h.OperatorStore.Put(r)
	h.mu.Lock()
	onPut, fn := h.onPut, h.fn
	h.onPut = nil // once
	h.mu.Unlock()
	if onPut != nil && err == nil {
		r.Rev = rev
		onPut(r, fn)
	}
	return rev, err
}

// A relay's own change that comes back through the watch before the
// store has answered it is applied once: the ban removes the member once,
// and the admin's answer counts it.
func TestOperatorEchoBeforeTheAnswer(t *testing.T) {
	h := &hookStore{OperatorStore: relay.NewMemoryOperatorStore()}
	r := opRelay(t, wallClock(), h)
	bob := dial(t, r).login("bob")
	h.mu.Lock()
	h.onPut = func(rec relay.OperatorRecord, fn func(relay.OperatorRecord, bool)) { fn(rec, false) }
	h.mu.Unlock()
	adminOK(t, r, "ban bob spam", "banned bob: spam", "removed 1 members")
	bob.expect("Admin notice: you were removed by the administrator: banned: spam")
	bob.expect("EXIT")
}

// A newer change of the same record made elsewhere while the relay's own
// is on its way wins, on this relay as in the store, and is announced
// after the relay's own.
func TestOperatorNewerChangeWhileStoring(t *testing.T) {
	inner := relay.NewMemoryOperatorStore()
	h := &hookStore{OperatorStore: inner}
	r := opRelay(t, wallClock(), h)
	alice := dialV2(t, r)
	alice.login1("alice")
	alice.joinRoom("dev", "")
	h.mu.Lock()
	h.onPut = func(rec relay.OperatorRecord, fn func(relay.OperatorRecord, bool)) {
		var v map[string]any
		if err := json.Unmarshal(rec.Value, &v); err != nil {
			t.Error(err)
			return
		}
		v["topic"] = "from elsewhere"
		rec.Value, _ = json.Marshal(v)
		rev, err := inner.Put(rec)
		if err != nil {
			t.Error(err)
			return
		}
		rec.Rev = rev
		fn(rec, false) // held: this relay's change has not been applied yet
	}
	h.mu.Unlock()
	adminOK(t, r, "topic dev from here", "topic of dev set")
	for _, want := range []string{"from here", "from elsewhere"} {
		if f := alice.expectT(wire.FrameNotice); f.Topic != want {
			t.Fatalf("notice %+v, want the topic %q", f, want)
		}
	}
	if got := topicOf(r, "dev"); got != "from elsewhere" {
		t.Fatalf("dev's topic is %q, want the newer one", got)
	}
	recs, _, _ := inner.Load()
	for _, rec := range recs {
		if rec.Kind == relay.RecordRoom && !strings.Contains(string(rec.Value), "from elsewhere") {
			t.Fatalf("the store holds %s", rec.Value)
		}
	}
}
