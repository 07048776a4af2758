package seamtest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay"
)

// OpenOperator opens a fresh, empty OperatorStore for one subtest, and a
// second handle on the same store (another connection, or the same value):
// what is put through one is loaded and watched through the other, as two
// relays sharing the store would.
type OpenOperator func(t *testing.T) (a, b relay.OperatorStore)

// Wait bounds every wait for a watched change.
const Wait = 10 * time.Second

// OperatorStore runs the OperatorStore contract against open.
func OperatorStore(t *testing.T, open OpenOperator) {
	t.Helper()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, a, b relay.OperatorStore)
	}{
		{"put, load, replace and delete", opPutLoadDelete},
		{"every change gets a higher revision", opRevisions},
		{"an expired record is not loaded", opExpired},
		{"keys of any bytes stay apart", opKeys},
		{"watch gives every change after the load, in order", opWatch},
		{"stop ends the watch", opWatchStop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := open(t)
			tc.run(t, a, b)
		})
	}
}

// rec is a test record whose value names it.
func rec(kind, key, value string) relay.OperatorRecord {
	v, _ := json.Marshal(map[string]string{"v": value})
	return relay.OperatorRecord{Kind: kind, Key: key, Value: v}
}

func put(t *testing.T, s relay.OperatorStore, r relay.OperatorRecord) uint64 {
	t.Helper()
	rev, err := s.Put(r)
	if err != nil {
		t.Fatalf("Put(%s %q): %v", r.Kind, r.Key, err)
	}
	if rev == 0 {
		t.Fatalf("Put(%s %q) gave revision 0", r.Kind, r.Key)
	}
	return rev
}

func del(t *testing.T, s relay.OperatorStore, kind, key string) uint64 {
	t.Helper()
	rev, err := s.Delete(kind, key)
	if err != nil {
		t.Fatalf("Delete(%s %q): %v", kind, key, err)
	}
	if rev == 0 {
		t.Fatalf("Delete(%s %q) gave revision 0", kind, key)
	}
	return rev
}

// load returns s's records by kind and key.
func load(t *testing.T, s relay.OperatorStore) map[[2]string]relay.OperatorRecord {
	t.Helper()
	recs, _, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	out := map[[2]string]relay.OperatorRecord{}
	for _, r := range recs {
		k := [2]string{r.Kind, r.Key}
		if _, dup := out[k]; dup {
			t.Fatalf("Load gave %s %q twice", r.Kind, r.Key)
		}
		out[k] = r
	}
	return out
}

// sameJSON reports whether a and b are equal JSON.
func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// checkRec fails unless got is want (its Value as equal JSON), with rev.
func checkRec(t *testing.T, got, want relay.OperatorRecord, rev uint64) {
	t.Helper()
	if got.Kind != want.Kind || got.Key != want.Key || !got.Expires.Equal(want.Expires) ||
		!sameJSON(got.Value, want.Value) || got.Rev != rev {
		t.Fatalf("got %s %q expires %v value %s rev %d; want %s %q expires %v value %s rev %d",
			got.Kind, got.Key, got.Expires, got.Value, got.Rev, want.Kind, want.Key, want.Expires, want.Value, rev)
	}
}

func opPutLoadDelete(t *testing.T, a, b relay.OperatorStore) {
	if recs := load(t, b); len(recs) != 0 {
		t.Fatalf("a fresh store holds %d records", len(recs))
	}
	alice := rec(relay.RecordBan, "name alice", "spam")
	alice.Expires = time.Now().Add(time.Hour).Round(0)
	r1 := put(t, a, alice)
	lock := rec(relay.RecordLockdown, "relay", "on")
	r2 := put(t, a, lock)
	recs := load(t, b)
	if len(recs) != 2 {
		t.Fatalf("after two puts Load gives %d records", len(recs))
	}
	checkRec(t, recs[[2]string{alice.Kind, alice.Key}], alice, r1)
	checkRec(t, recs[[2]string{lock.Kind, lock.Key}], lock, r2)

	again := rec(relay.RecordBan, "name alice", "spam and links") // no end now
	r3 := put(t, b, again)
	recs = load(t, a)
	if len(recs) != 2 {
		t.Fatalf("after a replacing put Load gives %d records", len(recs))
	}
	checkRec(t, recs[[2]string{again.Kind, again.Key}], again, r3)

	del(t, a, relay.RecordLockdown, "relay")
	del(t, a, relay.RecordLockdown, "relay")   // nothing to delete: still fine
	del(t, a, relay.RecordMute, "nobody ever") // never there
	recs = load(t, b)
	if _, ok := recs[[2]string{relay.RecordLockdown, "relay"}]; ok || len(recs) != 1 {
		t.Fatalf("after a delete Load gives %v", recs)
	}
}

func opRevisions(t *testing.T, a, b relay.OperatorStore) {
	var last uint64
	for i := range 6 {
		var rev uint64
		switch i % 3 {
		case 0:
			rev = put(t, a, rec(relay.RecordMute, "bob ", fmt.Sprint(i)))
		case 1:
			rev = put(t, b, rec(relay.RecordRoom, "dev", fmt.Sprint(i)))
		default:
			rev = del(t, a, relay.RecordMute, "bob ")
		}
		if rev <= last {
			t.Fatalf("change %d got revision %d after %d", i, rev, last)
		}
		last = rev
	}
}

func opExpired(t *testing.T, a, b relay.OperatorStore) {
	gone := rec(relay.RecordBan, "name eve", "gone")
	gone.Expires = time.Now().Add(-time.Second)
	put(t, a, gone)
	kept := rec(relay.RecordBan, "addr 10.0.0.0/8", "kept")
	kept.Expires = time.Now().Add(time.Hour)
	rev := put(t, a, kept)
	recs := load(t, b)
	if len(recs) != 1 {
		t.Fatalf("Load gives %v, want only the ban that has not ended", recs)
	}
	checkRec(t, recs[[2]string{kept.Kind, kept.Key}], kept, rev)
}

func opKeys(t *testing.T, a, b relay.OperatorStore) {
	keys := []string{"name alice", "name Alice", "addr 10.0.0.0/8", "addr ::1/128", "alice ", "alice dev",
		"房间", "a.b", "*", ">", "a b c", "x\x00y", "k"}
	revs := map[string]uint64{}
	for _, k := range keys {
		revs[k] = put(t, a, rec(relay.RecordMute, k, k))
	}
	put(t, a, rec(relay.RecordBan, "k", "ban k")) // same key, other kind
	recs := load(t, b)
	if len(recs) != len(keys)+1 {
		t.Fatalf("%d keys put, %d records loaded", len(keys)+1, len(recs))
	}
	for _, k := range keys {
		checkRec(t, recs[[2]string{relay.RecordMute, k}], rec(relay.RecordMute, k, k), revs[k])
	}
	if r := recs[[2]string{relay.RecordBan, "k"}]; !sameJSON(r.Value, rec("", "", "ban k").Value) {
		t.Fatalf("ban k holds %s", r.Value)
	}
}

// change is one call of a Watch's fn.
type change struct {
	rec     relay.OperatorRecord
	deleted bool
}

// watch starts a watch on s after rev whose calls arrive on the returned
// channel; it is stopped when the test ends, or by the returned stop.
func watch(t *testing.T, s relay.OperatorStore, after uint64) (<-chan change, func()) {
	t.Helper()
	ch := make(chan change, 100)
	var (
		mu      sync.Mutex // protects stopped
		stopped bool
	)
	stop, err := s.Watch(after, func(r relay.OperatorRecord, deleted bool) {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			t.Errorf("Watch called fn after stop returned: %s %q", r.Kind, r.Key)
			return
		}
		ch <- change{r, deleted}
	})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	var once sync.Once
	stopNow := func() {
		once.Do(func() {
			stop()
			mu.Lock()
			stopped = true
			mu.Unlock()
		})
	}
	t.Cleanup(stopNow)
	return ch, stopNow
}

// next returns the next watched change.
func next(t *testing.T, ch <-chan change) change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(Wait):
		t.Fatal("no change watched in time")
	}
	panic("unreachable")
}

// loadRev is the revision of a Load.
func loadRev(t *testing.T, s relay.OperatorStore) uint64 {
	t.Helper()
	_, rev, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return rev
}

// A watch from a Load's revision gives what changed since (a deletion
// too), then what changes while it runs, each once, in the store's order.
func opWatch(t *testing.T, a, b relay.OperatorStore) {
	first := rec(relay.RecordRoom, "dev", "topic one")
	r1 := put(t, a, first)
	after := loadRev(t, b)
	if after < r1 {
		t.Fatalf("Load's revision %d is below the put before it (%d)", after, r1)
	}

	// Between the load and the watch: a record put then deleted, one
	// replaced. Of each, the watch may give the latest change alone.
	mute := rec(relay.RecordMute, "alice dev", "muted")
	mute.Expires = time.Now().Add(time.Hour)
	put(t, a, mute)
	second := rec(relay.RecordRoom, "dev", "topic two")
	r3 := put(t, a, second)
	r4 := del(t, a, relay.RecordMute, "alice dev")

	ch, _ := watch(t, b, after)
	last := after
	var sawDev bool
	for !sawDev || last < r4 {
		c := next(t, ch)
		if c.rec.Rev <= last {
			t.Fatalf("watched %s %q rev %d after rev %d", c.rec.Kind, c.rec.Key, c.rec.Rev, last)
		}
		last = c.rec.Rev
		switch {
		case c.rec.Kind == relay.RecordRoom && c.rec.Rev == r3:
			checkRec(t, c.rec, second, r3)
			sawDev = true
		case c.rec.Kind == relay.RecordMute && c.rec.Rev == r4:
			if !c.deleted || c.rec.Key != "alice dev" {
				t.Fatalf("watched rev %d as %s %q deleted=%v, want the mute's deletion", r4, c.rec.Kind, c.rec.Key, c.deleted)
			}
		case c.rec.Kind == relay.RecordMute && !c.deleted:
			checkRec(t, c.rec, mute, c.rec.Rev) // the put before the deletion
		default:
			t.Fatalf("watched %s %q rev %d deleted=%v: not a change after the load", c.rec.Kind, c.rec.Key, c.rec.Rev, c.deleted)
		}
	}

	// While it runs: every change, in order.
	lock := rec(relay.RecordLockdown, "relay", "on")
	lock.Expires = time.Now().Add(-time.Second) // given as it is: an ended record lifts its earlier value
	r5 := put(t, a, lock)
	r6 := del(t, a, relay.RecordRoom, "dev")
	if c := next(t, ch); c.deleted {
		t.Fatalf("watched the deletion of %s %q, want the lockdown put", c.rec.Kind, c.rec.Key)
	} else {
		checkRec(t, c.rec, lock, r5)
	}
	if c := next(t, ch); !c.deleted || c.rec.Kind != relay.RecordRoom || c.rec.Key != "dev" || c.rec.Rev != r6 {
		t.Fatalf("watched %s %q rev %d deleted=%v, want the deletion of room dev rev %d", c.rec.Kind, c.rec.Key, c.rec.Rev, c.deleted, r6)
	}
}

func opWatchStop(t *testing.T, a, b relay.OperatorStore) {
	ch, stop := watch(t, b, loadRev(t, b))
	r1 := put(t, a, rec(relay.RecordLockdown, "relay", "on"))
	if c := next(t, ch); c.rec.Rev != r1 {
		t.Fatalf("watched rev %d, want %d", c.rec.Rev, r1)
	}
	stop()
	// A change after stop reaches a new watch, and never the stopped one
	// (its fn reports a call after stop as an error).
	r2 := put(t, a, rec(relay.RecordLockdown, "relay", "again"))
	ch2, _ := watch(t, b, r1)
	if c := next(t, ch2); c.rec.Rev != r2 {
		t.Fatalf("a watch after rev %d gave rev %d first, want %d", r1, c.rec.Rev, r2)
	}
	select {
	case c := <-ch:
		t.Fatalf("a stopped watch saw %s %q rev %d", c.rec.Kind, c.rec.Key, c.rec.Rev)
	default:
	}
}
