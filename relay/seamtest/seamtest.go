// Package seamtest holds the relay's seam to its contract: one table of
// behaviour for every RoomLogs, NameDirectory and OperatorStore, stated as
// the in-memory implementations (relay.NewMemoryLogs,
// relay.NewMemoryDirectory, relay.NewMemoryOperatorStore) behave. Another
// implementation (a shared store for several nodes) runs the same table in
// its own tests:
//
//	func TestConformance(t *testing.T) {
//		seamtest.RoomLogs(t, func(t *testing.T, history int) relay.RoomLogs { ... })
//		seamtest.NameDirectory(t, func(t *testing.T) relay.NameDirectory { ... })
//		seamtest.OperatorStore(t, func(t *testing.T) (a, b relay.OperatorStore) { ... })
//	}
package seamtest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// OpenLogs opens a fresh, empty RoomLogs whose rooms each keep their last
// history events (history is at least 16), for one subtest.
type OpenLogs func(t *testing.T, history int) relay.RoomLogs

// History is the history the table asks OpenLogs for when it tests what
// falls out of it; the concurrent test asks for more.
const History = 16

// RoomLogs runs the RoomLog contract against open.
func RoomLogs(t *testing.T, open OpenLogs) {
	t.Helper()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, open OpenLogs)
	}{
		{"append numbers events 1, 2, 3 and encodes them", appendNumbers},
		{"append copies what it keeps", appendCopies},
		{"rooms are independent", roomsIndependent},
		{"range returns what is held and reports what is lost", rangeLost},
		{"backlog marks events as history and keeps their seqs", backlog},
		{"concurrent appends get distinct seqs with no gap", concurrentAppends},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open) })
	}
}

func openRoom(t *testing.T, logs relay.RoomLogs, room string) relay.RoomLog {
	t.Helper()
	l, err := logs.Open(room)
	if err != nil {
		t.Fatalf("Open(%q): %v", room, err)
	}
	return l
}

// chat is the i-th test event.
func chat(i int) wire.Frame {
	return wire.Frame{T: wire.FrameChat, From: "alice", ID: uint64(i), Text: fmt.Sprintf("message %d", i)}
}

func appendOK(t *testing.T, l relay.RoomLog, f wire.Frame) (uint64, []byte) {
	t.Helper()
	seq, line, err := l.Append(f)
	if err != nil {
		t.Fatalf("Append(%+v): %v", f, err)
	}
	return seq, line
}

// decode decodes a line (a copy, so the frame outlives nothing).
func decode(t *testing.T, line []byte) wire.Frame {
	t.Helper()
	if len(line) == 0 || line[len(line)-1] != '\n' {
		t.Fatalf("line %q does not end in a newline", line)
	}
	var f wire.Frame
	if !wire.DecodeFrameInPlace(bytes.Clone(line), &f) {
		t.Fatalf("line %q does not decode", line)
	}
	return f
}

// checkChat checks that line is the i-th chat with seq and epoch.
func checkChat(t *testing.T, line []byte, i int, seq uint64, epoch string, history bool) {
	t.Helper()
	f := decode(t, line)
	want := chat(i)
	want.Seq, want.Epoch, want.History = seq, epoch, history
	if f.T != want.T || f.From != want.From || f.ID != want.ID || f.Text != want.Text ||
		f.Seq != want.Seq || f.Epoch != want.Epoch || f.History != want.History {
		t.Fatalf("line %q: got %+v, want %+v", line, f, want)
	}
}

func appendNumbers(t *testing.T, open OpenLogs) {
	l := openRoom(t, open(t, History), "main")
	epoch := l.Epoch()
	if epoch == "" {
		t.Fatal("Epoch() is empty")
	}
	if got := l.Latest(); got != 0 {
		t.Fatalf("Latest() = %d before the first event, want 0", got)
	}
	if lines, lf, lt := l.Range(1, 10); len(lines) != 0 || lf != 0 || lt != 0 {
		t.Fatalf("empty log: Range(1, 10) = %d lines, lost %d..%d", len(lines), lf, lt)
	}
	if b := l.Backlog(5, 10); len(b) != 0 {
		t.Fatalf("empty log: Backlog(5, 10) = %q", b)
	}
	for i := 1; i <= 3; i++ {
		seq, line := appendOK(t, l, chat(i))
		if seq != uint64(i) {
			t.Fatalf("append %d got seq %d", i, seq)
		}
		checkChat(t, line, i, seq, epoch, false)
		if got := l.Latest(); got != seq {
			t.Fatalf("Latest() = %d after seq %d", got, seq)
		}
	}
	if l.Epoch() != epoch {
		t.Fatalf("Epoch() changed from %q to %q", epoch, l.Epoch())
	}
	// A frame's own Seq, Epoch and History are the log's to set.
	f := chat(4)
	f.Seq, f.Epoch, f.History = 99, "forged", true
	seq, line := appendOK(t, l, f)
	if seq != 4 {
		t.Fatalf("a frame with Seq 99 got seq %d, want 4", seq)
	}
	if g := decode(t, line); g.Seq != 4 || g.Epoch != epoch {
		t.Fatalf("a frame with Seq 99 and an epoch of its own became %q", line)
	}
}

func appendCopies(t *testing.T, open OpenLogs) {
	l := openRoom(t, open(t, History), "main")
	buf := []byte("message 1")
	f := chat(1)
	f.Text = string(buf) // a copy; the relay's frames alias its buffers, which this stands for
	_, line := appendOK(t, l, f)
	kept := bytes.Clone(line)
	for i := range buf {
		buf[i] = 'x'
	}
	appendOK(t, l, chat(2))
	lines, _, _ := l.Range(1, 1)
	if len(lines) != 1 || !bytes.Equal(lines[0], kept) || !bytes.Equal(line, kept) {
		t.Fatalf("the line of seq 1 changed: Append gave %q, now %q, Range gives %q", kept, line, lines)
	}
}

func roomsIndependent(t *testing.T, open OpenLogs) {
	logs := open(t, History)
	// Names a store might not take as they are: dots, wildcards, CJK,
	// an inbox's "@". (The relay never opens two names of one room, such
	// as "Dev" and "dev", at once.)
	names := []string{"main", "dev.ops", "a*", ">", "小红的房间", "Dev", wire.Inbox + "0123abcd"}
	ls := make([]relay.RoomLog, len(names))
	for i, name := range names {
		ls[i] = openRoom(t, logs, name)
	}
	for i, l := range ls {
		for j := 0; j <= i; j++ {
			appendOK(t, l, chat(j+1))
		}
	}
	for i, l := range ls {
		if got := l.Latest(); got != uint64(i+1) {
			t.Errorf("room %q: Latest() = %d, want %d", names[i], got, i+1)
		}
		lines, lf, lt := l.Range(1, 100)
		if len(lines) != i+1 || lt != 0 {
			t.Fatalf("room %q: Range(1, 100) = %d lines, lost %d..%d; want %d lines", names[i], len(lines), lf, lt, i+1)
		}
		for j, line := range lines {
			checkChat(t, line, j+1, uint64(j+1), l.Epoch(), false)
		}
	}
}

// fill appends n chats and returns their lines by seq (lines[0] unused).
func fill(t *testing.T, l relay.RoomLog, n int) [][]byte {
	t.Helper()
	lines := make([][]byte, n+1)
	for i := 1; i <= n; i++ {
		seq, line := appendOK(t, l, chat(i))
		if seq != uint64(i) {
			t.Fatalf("append %d got seq %d", i, seq)
		}
		lines[i] = bytes.Clone(line)
	}
	return lines
}

func rangeLost(t *testing.T, open OpenLogs) {
	l := openRoom(t, open(t, History), "main")
	const n = 40 // seqs 25..40 held (History 16), 1..24 lost
	want := fill(t, l, n)
	for _, tc := range []struct {
		from, to         uint64
		first, last      uint64 // lines first..last; last 0: none
		lostFrom, lostTo uint64
	}{
		{1, 40, 25, 40, 1, 24},
		{0, 1000, 25, 40, 1, 24}, // from 0 is 1; to is clamped
		{30, 35, 30, 35, 0, 0},
		{25, 25, 25, 25, 0, 0},
		{40, 40, 40, 40, 0, 0},
		{20, 30, 25, 30, 20, 24},
		{5, 10, 0, 0, 5, 10},
		{24, 24, 0, 0, 24, 24},
		{41, 50, 0, 0, 0, 0}, // beyond the latest: nothing, nothing lost
		{35, 30, 0, 0, 0, 0}, // from > to
	} {
		lines, lf, lt := l.Range(tc.from, tc.to)
		var wantN int
		if tc.last != 0 {
			wantN = int(tc.last - tc.first + 1)
		}
		if len(lines) != wantN || lf != tc.lostFrom || lt != tc.lostTo {
			t.Errorf("Range(%d, %d) = %d lines, lost %d..%d; want %d lines (%d..%d), lost %d..%d",
				tc.from, tc.to, len(lines), lf, lt, wantN, tc.first, tc.last, tc.lostFrom, tc.lostTo)
			continue
		}
		for k, line := range lines {
			if seq := tc.first + uint64(k); !bytes.Equal(line, want[seq]) {
				t.Errorf("Range(%d, %d): seq %d is %q, Append gave %q", tc.from, tc.to, seq, line, want[seq])
			}
		}
	}
}

func backlog(t *testing.T, open OpenLogs) {
	l := openRoom(t, open(t, History), "main")
	fill(t, l, 40) // 25..40 held
	for _, tc := range []struct {
		n           int
		upto        uint64
		first, last uint64 // last 0: none
	}{
		{5, 40, 36, 40},
		{100, 40, 25, 40}, // only what is held
		{5, 30, 26, 30},
		{5, 1000, 36, 40}, // upto clamped to the latest
		{1, 25, 25, 25},
		{5, 24, 0, 0}, // all lost
		{0, 40, 0, 0},
		{5, 0, 0, 0},
	} {
		lines := l.Backlog(tc.n, tc.upto)
		var wantN int
		if tc.last != 0 {
			wantN = int(tc.last - tc.first + 1)
		}
		if len(lines) != wantN {
			t.Errorf("Backlog(%d, %d) = %d lines, want %d (%d..%d)", tc.n, tc.upto, len(lines), wantN, tc.first, tc.last)
			continue
		}
		for k, line := range lines {
			seq := tc.first + uint64(k)
			checkChat(t, line, int(seq), seq, l.Epoch(), true)
		}
	}
	// The backlog is a copy: the held events are not marked.
	lines, _, _ := l.Range(40, 40)
	if len(lines) != 1 {
		t.Fatalf("Range(40, 40) = %d lines after Backlog", len(lines))
	}
	checkChat(t, lines[0], 40, 40, l.Epoch(), false)
}

func concurrentAppends(t *testing.T, open OpenLogs) {
	const writers, each = 8, 25
	l := openRoom(t, open(t, writers*each), "main")
	got := make(map[uint64][]byte, writers*each)
	var (
		mu   sync.Mutex // protects got, errs
		wg   sync.WaitGroup
		errs []error
	)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				f := chat(w*each + i + 1)
				seq, line, err := l.Append(f)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if _, dup := got[seq]; dup {
					errs = append(errs, fmt.Errorf("seq %d given twice", seq))
				} else {
					got[seq] = bytes.Clone(line)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	const n = writers * each
	if l.Latest() != n {
		t.Fatalf("Latest() = %d after %d appends", l.Latest(), n)
	}
	lines, lf, lt := l.Range(1, n)
	if len(lines) != n || lt != 0 {
		t.Fatalf("Range(1, %d) = %d lines, lost %d..%d", n, len(lines), lf, lt)
	}
	for i, line := range lines {
		seq := uint64(i + 1)
		if !bytes.Equal(line, got[seq]) {
			t.Fatalf("seq %d: Range gives %q, Append gave %q", seq, line, got[seq])
		}
		if f := decode(t, line); f.Seq != seq {
			t.Fatalf("seq %d: the line says seq %d", seq, f.Seq)
		}
	}
}

// NameDirectory runs the NameDirectory contract against newDir, which
// returns a fresh, empty directory for one subtest.
func NameDirectory(t *testing.T, newDir func(t *testing.T) relay.NameDirectory) {
	t.Helper()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, d relay.NameDirectory)
	}{
		{"claim, lookup, release", claimRelease},
		{"keys are independent", keysIndependent},
		{"one of many concurrent claims wins", concurrentClaims},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newDir(t)) })
	}
}

func lookup(t *testing.T, d relay.NameDirectory, key, want string) {
	t.Helper()
	owner, ok := d.Lookup(key)
	if want == "" {
		if ok || owner != "" {
			t.Fatalf("Lookup(%q) = %q, %v; want nobody", key, owner, ok)
		}
		return
	}
	if !ok || owner != want {
		t.Fatalf("Lookup(%q) = %q, %v; want %q", key, owner, ok, want)
	}
}

func claimRelease(t *testing.T, d relay.NameDirectory) {
	lookup(t, d, "alice", "")
	d.Release("alice", "s1") // nobody holds it: nothing happens
	lookup(t, d, "alice", "")
	if err := d.Claim("alice", "s1"); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	lookup(t, d, "alice", "s1")
	if err := d.Claim("alice", "s1"); err != nil {
		t.Fatalf("the holder claims again: %v", err)
	}
	if err := d.Claim("alice", "s2"); !errors.Is(err, relay.ErrNameTaken) {
		t.Fatalf("a second owner's claim: err = %v, want ErrNameTaken", err)
	}
	lookup(t, d, "alice", "s1")
	d.Release("alice", "s2") // not the holder: nothing happens
	lookup(t, d, "alice", "s1")
	d.Release("alice", "s1")
	lookup(t, d, "alice", "")
	if err := d.Claim("alice", "s2"); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	lookup(t, d, "alice", "s2")
}

func keysIndependent(t *testing.T, d relay.NameDirectory) {
	// Compare keys as wire.CanonicalName makes them, and characters a
	// store might not take as they are.
	keys := []string{"alice", "bob", "小红", "a.b", "a b", "*", ">", "a_b", "61"}
	for i, k := range keys {
		if err := d.Claim(k, fmt.Sprintf("s%d", i)); err != nil {
			t.Fatalf("Claim(%q): %v", k, err)
		}
	}
	for i, k := range keys {
		lookup(t, d, k, fmt.Sprintf("s%d", i))
	}
	d.Release("a.b", "s3")
	lookup(t, d, "a.b", "")
	for i, k := range keys {
		if k != "a.b" {
			lookup(t, d, k, fmt.Sprintf("s%d", i))
		}
	}
}

func concurrentClaims(t *testing.T, d relay.NameDirectory) {
	const claimers = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex // protects winners, errs
		winners []string
		errs    []error
	)
	for i := range claimers {
		owner := fmt.Sprintf("s%d", i)
		wg.Go(func() {
			err := d.Claim("carol", owner)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, owner)
			case !errors.Is(err, relay.ErrNameTaken):
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if len(winners) != 1 {
		t.Fatalf("%d claims of one name won: %v", len(winners), winners)
	}
	lookup(t, d, "carol", winners[0])
}
