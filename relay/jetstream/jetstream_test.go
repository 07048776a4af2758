package jetstream_test

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/jetstream"
	"github.com/chatrelay/chatrelay/relay/seamtest"
	"github.com/chatrelay/chatrelay/relay/wire"
)

func TestMain(m *testing.M) {
	// Every test shuts its server down and waits for it (Embedded.Close),
	// so nothing of nats-server or nats.go may be left running.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// start starts an embedded server storing in dir, closed when the test ends.
func start(t *testing.T, dir string) *jetstream.Embedded {
	t.Helper()
	e, err := jetstream.StartEmbedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func newLogs(t *testing.T, e *jetstream.Embedded, o jetstream.LogOptions) *jetstream.Logs {
	t.Helper()
	l, err := jetstream.NewLogs(e.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestConformance(t *testing.T) {
	t.Run("logs", func(t *testing.T) {
		seamtest.RoomLogs(t, func(t *testing.T, history int) relay.RoomLogs {
			return newLogs(t, start(t, t.TempDir()), jetstream.LogOptions{History: history})
		})
	})
	t.Run("logs without a cache", func(t *testing.T) {
		// Cache 1: nearly every read goes to the stream, so what the
		// stream gives back is held to the contract too.
		seamtest.RoomLogs(t, func(t *testing.T, history int) relay.RoomLogs {
			return newLogs(t, start(t, t.TempDir()), jetstream.LogOptions{History: history, Cache: 1})
		})
	})
	t.Run("operator", func(t *testing.T) {
		// Two connections to one server: what one relay puts, the other
		// loads and watches.
		seamtest.OperatorStore(t, func(t *testing.T) (a, b relay.OperatorStore) {
			e := start(t, t.TempDir())
			return newOperator(t, e.JS), newOperator(t, connect(t, e))
		})
	})
	t.Run("directory", func(t *testing.T) {
		seamtest.NameDirectory(t, func(t *testing.T) relay.NameDirectory {
			d, err := jetstream.NewDirectory(start(t, t.TempDir()).JS, jetstream.DirectoryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return d
		})
	})
}

func chat(i int) wire.Frame {
	return wire.Frame{T: wire.FrameChat, From: "alice", ID: uint64(i), Text: fmt.Sprintf("hello %d", i)}
}

// A relay restarted on the same store keeps each room's epoch, seq and
// history, and its names.
func TestRestartKeepsHistory(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir)
	o := jetstream.LogOptions{History: 100}
	room, err := newLogs(t, e, o).Open("dev.ops")
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for i := 1; i <= 5; i++ {
		_, line, err := room.Append(chat(i))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, line)
	}
	d, err := jetstream.NewDirectory(e.JS, jetstream.DirectoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Claim("alice", "s1"); err != nil {
		t.Fatal(err)
	}
	epoch := room.Epoch()
	e.Close()

	e2 := start(t, dir)
	again, err := newLogs(t, e2, o).Open("dev.ops")
	if err != nil {
		t.Fatal(err)
	}
	if again.Epoch() != epoch || again.Latest() != 5 {
		t.Fatalf("after a restart: epoch %q latest %d, want %q and 5", again.Epoch(), again.Latest(), epoch)
	}
	lines, lf, lt := again.Range(1, 5)
	if len(lines) != 5 || lt != 0 {
		t.Fatalf("after a restart: Range(1, 5) = %d lines, lost %d..%d", len(lines), lf, lt)
	}
	for i := range lines {
		if !bytes.Equal(lines[i], want[i]) {
			t.Fatalf("after a restart seq %d is %q, was %q", i+1, lines[i], want[i])
		}
	}
	if b := again.Backlog(2, 5); len(b) != 2 || !bytes.Contains(b[1], []byte(`"history":true`)) || !bytes.Contains(b[1], []byte(`"seq":5`)) {
		t.Fatalf("after a restart Backlog(2, 5) = %q", b)
	}
	seq, _, err := again.Append(chat(6))
	if err != nil || seq != 6 {
		t.Fatalf("the first append after a restart got seq %d, %v; want 6", seq, err)
	}
	d2, err := jetstream.NewDirectory(e2.JS, jetstream.DirectoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := d2.Lookup("alice"); !ok || owner != "s1" {
		t.Fatalf("after a restart alice is held by %q, %v", owner, ok)
	}
	// Another room of the same store is new: its own epoch, from seq 1.
	other, err := newLogs(t, e2, o).Open("dev")
	if err != nil {
		t.Fatal(err)
	}
	if other.Epoch() == epoch || other.Latest() != 0 {
		t.Fatalf("a new room has epoch %q (dev.ops: %q) and latest %d", other.Epoch(), epoch, other.Latest())
	}
}

// A smaller history on reopening trims the room to it.
func TestReopenWithSmallerHistory(t *testing.T) {
	e := start(t, t.TempDir())
	room, err := newLogs(t, e, jetstream.LogOptions{History: 50}).Open("main")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 30; i++ {
		if _, _, err := room.Append(chat(i)); err != nil {
			t.Fatal(err)
		}
	}
	again, err := newLogs(t, e, jetstream.LogOptions{History: 16}).Open("main")
	if err != nil {
		t.Fatal(err)
	}
	lines, lf, lt := again.Range(1, 30)
	if len(lines) != 16 || lf != 1 || lt != 14 || again.Epoch() != room.Epoch() {
		t.Fatalf("history 50 -> 16: Range(1, 30) = %d lines, lost %d..%d; epoch %q, was %q", len(lines), lf, lt, again.Epoch(), room.Epoch())
	}
}

// A chat published again under its message id (a retransmission, or the
// same chat through another node) is stored once.
func TestMsgIDStoresOnce(t *testing.T) {
	e := start(t, t.TempDir())
	logs := newLogs(t, e, jetstream.LogOptions{History: 100})
	log, err := logs.Open("main")
	if err != nil {
		t.Fatal(err)
	}
	room := log.(relay.OnceAppender)
	id := func(f wire.Frame) string { return fmt.Sprintf("session-1/%d", f.ID) }
	s1, l1, dup1, err := room.AppendOnce(chat(1), id(chat(1)))
	if err != nil {
		t.Fatal(err)
	}
	s2, l2, dup2, err := room.AppendOnce(chat(1), id(chat(1)))
	if err != nil {
		t.Fatal(err)
	}
	if s1 != 1 || s2 != 1 || dup1 || !dup2 || !bytes.Equal(l1, l2) || log.Latest() != 1 {
		t.Fatalf("the same chat twice: seqs %d, %d, dup %v, %v, lines %q, %q, latest %d", s1, s2, dup1, dup2, l1, l2, log.Latest())
	}
	if s3, _, dup, err := room.AppendOnce(chat(2), id(chat(2))); err != nil || s3 != 2 || dup {
		t.Fatalf("the next chat got seq %d, dup %v, %v; want 2", s3, dup, err)
	}
}

// Any room name, however long or odd, gets a stream of its own.
func TestStreamNames(t *testing.T) {
	logs := newLogs(t, start(t, t.TempDir()), jetstream.LogOptions{History: 16})
	long := strings.Repeat("房", 64) // 192 bytes: named by its hash
	seen := map[string]string{}
	for _, room := range []string{"main", "a.b", "a b", "*", ">", long, long[:len(long)-3] + "间"} {
		name, subject := logs.StreamName(room)
		if len(name) > 255 || strings.ContainsAny(name, ". *>") || strings.ContainsAny(subject, " *>") {
			t.Fatalf("room %q: stream %q subject %q", room, name, subject)
		}
		if other, dup := seen[name]; dup {
			t.Fatalf("rooms %q and %q share stream %q", room, other, name)
		}
		seen[name] = room
		l, err := logs.Open(room)
		if err != nil {
			t.Fatalf("Open(%q): %v", room, err)
		}
		if _, _, err := l.Append(chat(1)); err != nil {
			t.Fatalf("room %q: %v", room, err)
		}
	}
}

// "Dev" and "ＤＥＶ" are one room: reopened under either name it keeps its
// history. Inboxes go to Local when it is set.
func TestOneRoomWhateverItsName(t *testing.T) {
	logs := newLogs(t, start(t, t.TempDir()), jetstream.LogOptions{History: 16, Local: relay.NewMemoryLogs(16)})
	a, err := logs.Open("Dev")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Append(chat(1)); err != nil {
		t.Fatal(err)
	}
	b, err := logs.Open("ＤＥＶ")
	if err != nil {
		t.Fatal(err)
	}
	if b.Epoch() != a.Epoch() || b.Latest() != 1 {
		t.Fatalf("ＤＥＶ: epoch %q latest %d; Dev: epoch %q latest 1", b.Epoch(), b.Latest(), a.Epoch())
	}
	in, err := logs.Open(wire.Inbox + "s1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := in.Append(chat(1)); err != nil {
		t.Fatal(err)
	}
	again, err := logs.Open(wire.Inbox + "s1")
	if err != nil {
		t.Fatal(err)
	}
	if again.Latest() != 0 {
		t.Fatalf("an inbox reopened with Local set holds %d events: it went to a stream", again.Latest())
	}
}

// What a SIGKILL leaves is what the store wrote before each ack: a copy
// of the directory taken while the server runs (no shutdown, no flush)
// holds every acknowledged chat, and a server on it goes on after the
// last of them, so no seq is given twice. (Writes go to the OS before the
// ack, fsync'd every SyncInterval: a crash of the process loses nothing, a
// crash of the machine may lose the last two minutes, as JetStream's
// defaults do.)
func TestAckedChatsSurviveACrash(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir)
	room, err := newLogs(t, e, jetstream.LogOptions{History: 100}).Open("main")
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for i := 1; i <= 20; i++ {
		_, line, err := room.Append(chat(i))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, line)
	}
	crashed := t.TempDir()
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	again, err := newLogs(t, start(t, crashed), jetstream.LogOptions{History: 100}).Open("main")
	if err != nil {
		t.Fatal(err)
	}
	if again.Latest() != 20 || again.Epoch() != room.Epoch() {
		t.Fatalf("after the crash: latest %d epoch %q; want 20 and %q", again.Latest(), again.Epoch(), room.Epoch())
	}
	lines, _, _ := again.Range(1, 20)
	for i := range want {
		if i >= len(lines) || !bytes.Equal(lines[i], want[i]) {
			t.Fatalf("after the crash seq %d is %q, was %q", i+1, lines[min(i, len(lines)-1)], want[i])
		}
	}
	if seq, _, err := again.Append(chat(21)); err != nil || seq != 21 {
		t.Fatalf("the first chat after the crash: seq %d, %v; want 21", seq, err)
	}
}
