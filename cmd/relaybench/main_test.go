//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
	"go.uber.org/goleak"
)

// TestMain lets the test binary stand in for relaybench when it starts
// itself as a reference relay (--serve-ref), as the tool does: the smoke
// tests below run every relay through the tool's own start-up path.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "--serve-ref" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent(), goleak.Cleanup(func(int) {
		if relayBuild.dir != "" {
			os.RemoveAll(relayBuild.dir)
		}
	}))
}

func TestEncodeParse(t *testing.T) {
	text := bytes.Repeat([]byte("x"), textLen)
	encodeText(text, 3, 42, 1234567890123456789)
	s, q, ts, ok := parseChat(append([]byte("m0003 says: "), text...))
	if !ok || s != 3 || q != 42 || ts != 1234567890123456789 {
		t.Fatalf("parseChat = %d %d %d %v", s, q, ts, ok)
	}
	for _, bad := range []string{"m0003 joined the chat room", "m0003 says: s=0x q=0000000001 t=1", "", "m0003 says: " + strings.Repeat("s", 80)} {
		if _, _, _, ok := parseChat([]byte(bad)); ok {
			t.Errorf("parseChat(%q) accepted", bad)
		}
	}
}

// TestV2ChatMatchesCodec: the chat datagrams the tool builds by hand are
// what the relay's codec makes and reads, and the receiver's scan finds the
// text in the relay's own encoding of the chat event.
func TestV2ChatMatchesCodec(t *testing.T) {
	text := bytes.Repeat([]byte("x"), textLen)
	encodeText(text, 1, 7, 99)
	b := appendV2Chat(nil, wire.RoomMain, 12345, text)
	frames, err := wire.DecodeV2(nil, b)
	if err != nil || len(frames) != 1 {
		t.Fatalf("DecodeV2(%q) = %v, %v", b, frames, err)
	}
	want := wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, ID: 12345, Text: string(text)}
	if !slices.EqualFunc(frames, []wire.Frame{want}, func(a, b wire.Frame) bool {
		return a.T == b.T && a.Room == b.Room && a.ID == b.ID && a.Text == b.Text
	}) {
		t.Errorf("decoded %+v, want %+v", frames[0], want)
	}
	if got := wire.EncodeV2(&want); !bytes.Equal(got, b) {
		t.Logf("codec: %q\ntool:  %q (field order may differ; the relay decodes both)", got, b)
	}
	ev := wire.EncodeV2(&wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, Seq: 9, Epoch: "e", From: "m0001", ID: 7, Text: string(text)},
		&wire.Frame{T: wire.FrameJoin, Room: wire.RoomMain, Seq: 10, Epoch: "e", From: "m0002"})
	r := &receiver{ms: []*member{{idx: 0}}, lay: layout{rooms: 1, size: 2, perRoom: 2}, seqs: 64, stepStart: 1}
	r.st.seen, r.st.last = [][]uint64{{0}, {0}}, []int64{-1, -1}
	r.now = 1000
	r.datagram(0, ev)
	if r.st.delivered != 1 || r.st.other != 1 {
		t.Errorf("chat event + join: delivered %d, other %d; want 1, 1", r.st.delivered, r.st.other)
	}
	// A datagram of more frames than a client accepts counts for nothing,
	// as a client refuses it whole.
	var many []*wire.Frame
	for i := range wire.MaxFramesPerDatagram + 1 {
		many = append(many, &wire.Frame{T: wire.FrameChat, Room: wire.RoomMain, Seq: uint64(11 + i), Epoch: "e", From: "m0001", ID: uint64(8 + i), Text: string(text)})
	}
	r.datagram(0, wire.EncodeV2(many...))
	if r.st.delivered != 1 || r.st.other != 2 {
		t.Errorf("a datagram of %d frames: delivered %d, other %d; want it refused whole (1, 2)", len(many), r.st.delivered, r.st.other)
	}
}

func TestHistQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h hist
	var vs []int64
	for i := 0; i < 20000; i++ {
		v := int64(rng.ExpFloat64() * 300_000) // ns, like loopback latencies
		if i%1000 == 0 {
			v = 5_000_000_000 // a few multi-second outliers
		}
		h.add(v)
		vs = append(vs, v)
	}
	slices.Sort(vs)
	for _, p := range []float64{0, 0.5, 0.99, 0.999} {
		want := vs[int(p*float64(len(vs)-1))]
		got := h.quantile(p)
		if d := float64(got-want) / float64(max(want, 1)); d > 0.01 || d < -0.01 {
			t.Errorf("p%v = %d, want %d within 1%%", p*100, got, want)
		}
	}
	if h.quantile(1) != vs[len(vs)-1] {
		t.Errorf("max = %d, want %d", h.quantile(1), vs[len(vs)-1])
	}
	var empty hist
	if empty.quantile(0.99) != 0 {
		t.Error("empty histogram has a p99")
	}
	h.add(-5) // clock skew must not index out of range
}

type natsRec struct {
	msgs         []string
	pings, other int
}

func (n *natsRec) natsMsg(p []byte) { n.msgs = append(n.msgs, string(p)) }
func (n *natsRec) natsPing()        { n.pings++ }
func (n *natsRec) natsOther()       { n.other++ }

// TestNATSScanSplit: the stream parser finds the same messages however the
// stream is cut into reads, and never holds more than one unfinished op.
func TestNATSScanSplit(t *testing.T) {
	stream := "INFO {\"server_id\":\"x\"}\r\n+OK\r\nMSG room 1 5\r\nhello\r\nPING\r\n" +
		"MSG room 1 _INBOX.x 3\r\nabc\r\nPONG\r\nMSG room 1 0\r\n\r\n-ERR 'oops'\r\n"
	want := []string{"hello", "abc", ""}
	for cut := 0; cut <= len(stream); cut++ {
		var rec natsRec
		var partial []byte
		for _, chunk := range []string{stream[:cut], stream[cut:]} {
			b := append(slices.Clone(partial), chunk...)
			used := natsScan(b, &rec)
			partial = b[used:]
		}
		if !slices.Equal(rec.msgs, want) || rec.pings != 1 || rec.other != 1 || len(partial) != 0 {
			t.Fatalf("cut at %d: msgs %q pings %d other %d partial %q", cut, rec.msgs, rec.pings, rec.other, partial)
		}
	}
	var rec natsRec
	junk := bytes.Repeat([]byte("z"), maxNATSLine+1)
	if used := natsScan(junk, &rec); used != len(junk) || rec.other != 1 {
		t.Errorf("an endless line: used %d of %d, other %d", used, len(junk), rec.other)
	}
	rec = natsRec{}
	if used := natsScan([]byte("MSG room 1 99999999\r\nxx"), &rec); used == 0 || rec.other != 1 {
		t.Errorf("a huge payload size: used %d, other %d", used, rec.other)
	}
}

// TestPackLines: each recipient gets every line but its own, once, in
// order, in datagrams no larger than the budget.
func TestPackLines(t *testing.T) {
	const a, b = 1, 2
	var arena []byte
	var chats []fastChat
	var all []string
	add := func(from int32, line string) {
		chats = append(chats, fastChat{from, span{int32(len(arena)), int32(len(line))}})
		arena = append(arena, line...)
		all = append(all, line)
	}
	for i := 0; i < 40; i++ {
		from := int32(a)
		if i%3 == 0 {
			from = b
		}
		add(from, strings.Repeat(string(rune('a'+i%26)), 70+i))
	}
	add(a, strings.Repeat("L", 1500)) // longer than the budget: alone
	for _, skip := range []int32{-1, a, b} {
		var want []string
		for i, c := range chats {
			if c.from != skip {
				want = append(want, all[i])
			}
		}
		packed, spans := appendPacked(slices.Clone(arena), nil, chats, skip, 1200)
		var got []string
		for _, s := range spans {
			d := packed[s.off : s.off+s.n]
			if len(d) > 1200 && bytes.IndexByte(d, '\n') >= 0 {
				t.Errorf("skip %v: a %d-byte datagram of several lines", skip, len(d))
			}
			got = append(got, strings.Split(string(d), "\n")...)
		}
		if !slices.Equal(got, want) {
			t.Errorf("skip %v: %d lines, want %d, in order", skip, len(got), len(want))
		}
	}
	if _, spans := appendPacked(slices.Clone(arena), nil, chats[:1], chats[0].from, 1200); len(spans) != 0 {
		t.Errorf("a batch of only my own chat gives me %d datagrams", len(spans))
	}
}

// TestWritePlots: the charts are written as SVG and PNG, one line per
// relay, from the room scenarios' summaries.
func TestWritePlots(t *testing.T) {
	rep := &Report{}
	for _, m := range []int{10, 100, 1000} {
		rep.Scenarios = append(rep.Scenarios, ScenarioReport{Name: "room" + strconv.Itoa(m), Members: m, Summary: []Summary{
			{Relay: relayClassic, Members: m, SustainedPerS: 150_000, P99FirstUs: 300, CPUusPerDeliv: 5},
			{Relay: refCoalesce, Members: m, SustainedPerS: 2_000_000, P99FirstUs: 250, CPUusPerDeliv: 0.4},
		}})
	}
	dir := t.TempDir()
	files, err := writePlots(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 6 {
		t.Errorf("files %v, want 3 charts x (svg, png)", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		switch filepath.Ext(f) {
		case ".svg":
			if !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte(refCoalesce)) {
				t.Errorf("%s: not an SVG naming the relays", f)
			}
		case ".png":
			if !bytes.HasPrefix(b, []byte("\x89PNG")) {
				t.Errorf("%s: not a PNG", f)
			}
		}
	}
	if _, err := writePlots(dir, &Report{}); err == nil {
		t.Error("plots without any room scenario: no error")
	}
}

var relayBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// relayBin builds ./cmd/relay once for the package's tests (TestMain
// removes it at the end).
func relayBin(t *testing.T) string {
	t.Helper()
	relayBuild.once.Do(func() {
		relayBuild.dir, relayBuild.err = os.MkdirTemp("", "relaybench-test-")
		if relayBuild.err == nil {
			relayBuild.bin, relayBuild.err = buildRelay(relayBuild.dir)
		}
	})
	if relayBuild.err != nil {
		t.Fatal(relayBuild.err)
	}
	return relayBuild.bin
}

// TestSmoke runs every relay through the tool's own path (a child process
// started as the tool starts it, members logged in once, two steps) at a
// low rate on loopback: every chat reaches every other member once and in
// order, nothing of the first step leaks into the second, and a v2 sender
// sees its own chats echoed. It asserts correctness only, no timing.
func TestSmoke(t *testing.T) {
	self, devnull := selfAndDevNull(t)
	e := &env{tmp: t.TempDir(), self: self, logs: devnull, stderr: devnull, start: time.Now()}
	for _, name := range allRelays {
		t.Run(name, func(t *testing.T) {
			if isChatrelay(name) {
				e.relayBin = relayBin(t)
			}
			p, addr, proto, err := e.startRelay(name, defaultBudget)
			if err != nil {
				t.Fatal(err)
			}
			defer p.stop()
			smokeSteps(t, p, addr, proto)
		})
	}
}

// selfAndDevNull is the test binary (it serves the references: TestMain)
// and /dev/null for the relays' logs, closed when t ends.
func selfAndDevNull(t *testing.T) (string, *os.File) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { devnull.Close() })
	return self, devnull
}

// smokeSteps logs 10 members in to the relay p serves on addr and runs two
// steps of 250 ms at 200 and 400 chats/s, asserting what TestSmoke says.
func smokeSteps(t *testing.T, p *proc, addr netip.AddrPort, proto Proto) {
	t.Helper()
	sc := Scenario{Members: 10, Senders: 2, Duration: 250 * time.Millisecond,
		Receivers: 2, RcvBuf: 1 << 20, Drain: 3 * time.Second, Budget: defaultBudget, V2Rev: wire.Rev}
	sess, err := dial(proto, addr, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.close()
	for stepN, rate := range []int{200, 400} {
		r, err := sess.step(rate, p.cpu)
		if err != nil {
			t.Fatal(err)
		}
		want := int64(rate / 4) // rate/s for 250 ms
		t.Logf("step %d: sent %d, delivered %d of %d, p99 %.0f µs, rx/deliv %.3f, echoes %d, other %d",
			stepN, r.Sent, r.Delivered, r.Expected, r.P99us, r.RxPerDeliv, r.Echoes, r.Other)
		if r.Sent != want || r.SendErrors != 0 {
			t.Errorf("step %d: sent %d (errors %d), want %d", stepN, r.Sent, r.SendErrors, want)
		}
		if r.Expected != r.Sent*9 || r.Delivered != r.Expected || r.Ratio != 1 {
			t.Errorf("step %d: delivered %d of %d", stepN, r.Delivered, r.Expected)
		}
		if r.Duplicates != 0 || r.Reordered != 0 || r.Stale != 0 {
			t.Errorf("step %d: duplicates %d, reordered %d, stale %d", stepN, r.Duplicates, r.Reordered, r.Stale)
		}
		wantEchoes := int64(0)
		if proto == ProtoV2 {
			wantEchoes = r.Sent
		}
		if r.Echoes != wantEchoes {
			t.Errorf("step %d: %d echoes, want %d", stepN, r.Echoes, wantEchoes)
		}
		if r.P50us <= 0 || r.P99us < r.P50us || r.P999us < r.P99us || r.MaxUs < r.P999us {
			t.Errorf("step %d: latency percentiles make no sense: %+v", stepN, r)
		}
		if r.RelayCPUs < 0 || r.RxUnits < 1 {
			t.Errorf("step %d: relay CPU %v (want known), rx units %d", stepN, r.RelayCPUs, r.RxUnits)
		}
	}
}

// TestRunCustomJSON runs the command itself (flags in, JSON out) on a
// tiny custom load against chatrelay.
func TestRunCustomJSON(t *testing.T) {
	var out, errb bytes.Buffer
	file := filepath.Join(t.TempDir(), "report.json")
	code := run([]string{"--relay-bin", relayBin(t), "--relays", "chatrelay", "--proto", "v2", "--members", "5", "--senders", "1",
		"--rates", "100", "--duration", "200ms", "--json", "--json-file", file}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if b, err := os.ReadFile(file); err != nil || !json.Valid(b) || !bytes.Contains(b, []byte(`"relay": "chatrelay-v2"`)) {
		t.Errorf("--json-file: %v: %.200s", err, b)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(rep.Scenarios) != 1 || len(rep.Scenarios[0].Results) != 1 {
		t.Fatalf("report: %+v", rep)
	}
	r := rep.Scenarios[0].Results[0]
	if r.Relay != relayV2 || r.Proto != "v2" || r.Sent != 20 || r.Delivered != 80 || !r.Sustained {
		t.Errorf("result %+v", r)
	}
	if r.SockDrops != 0 { // known (not -1), and a quiet step loses nothing in the members' sockets
		t.Errorf("member_socket_drops %d, want 0", r.SockDrops)
	}
	if s := rep.Scenarios[0].Summary; len(s) != 1 || s[0].SustainedRate != 100 || !s[0].AtLeast {
		t.Errorf("summary %+v", s)
	}
}

// Datagrams the kernel drops in the load tool's own member sockets are
// counted apart (SOCKDROPS in the table, member_socket_drops in JSON): with
// receive buffers of a couple of datagrams, a step of 10 members at 20,000
// chats/s overflows them, and what was dropped there is missing from the
// deliveries.
func TestStepReportsDropsInMemberSockets(t *testing.T) {
	var out, errb bytes.Buffer
	file := filepath.Join(t.TempDir(), "report.json")
	code := run([]string{"--relay-bin", relayBin(t), "--relays", "chatrelay", "--proto", "classic", "--members", "10", "--senders", "4",
		"--rates", "20000", "--duration", "300ms", "--rcvbuf", "2048", "--json-file", file}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Scenarios) != 1 || len(rep.Scenarios[0].Results) != 1 {
		t.Fatalf("report: %v: %.300s", err, b)
	}
	r := rep.Scenarios[0].Results[0]
	if r.SockDrops <= 0 {
		t.Fatalf("member_socket_drops %d with 2 KiB member buffers at 20,000 chats/s, want some; result %+v", r.SockDrops, r)
	}
	if r.Delivered+r.SockDrops > r.Expected {
		t.Errorf("delivered %d + dropped in the member sockets %d > expected %d: a drop was counted that was delivered", r.Delivered, r.SockDrops, r.Expected)
	}
	if want := fmt.Sprintf("SOCKDROPS %d", r.SockDrops); !strings.Contains(out.String(), want) {
		t.Errorf("the table does not say %q:\n%s", want, out.String())
	}
}

func TestParseFlags(t *testing.T) {
	bad := [][]string{
		{"--relays", "chatrelay,unknown"},
		{"--proto", "v3"},
		{"--scenario", "room7"},
		{"--budget", "100"},
		{"--rates", "1,x"},
		{"--members", "1"},
		{"--bisect", "-1"},
		{"--bisect", "9"},
		{"--retries", "4"},
		{"extra"},
	}
	for _, args := range bad {
		if _, err := parse(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parse(%q): no error", args)
		}
	}
	c, err := parse([]string{"--relays", "chatrelay,nats", "--proto", "both"}, &bytes.Buffer{})
	if err != nil || !slices.Equal(c.relays, []string{relayClassic, relayV2, refNATS}) {
		t.Errorf("--proto both: %v %v", c.relays, err)
	}
	c, err = parse([]string{"--scenario", "all"}, &bytes.Buffer{})
	if err != nil || c.stopAfter != 1 || c.timeLimit != 12*time.Minute || c.bisect != 2 || c.retries != 1 {
		t.Errorf("--scenario all: stop-after %d, time limit %v, bisect %d, retries %d, %v", c.stopAfter, c.timeLimit, c.bisect, c.retries, err)
	}
	if c, err := parse([]string{"--rates", "1000,2000"}, &bytes.Buffer{}); err != nil || c.retries != 0 || c.stopAfter != 0 {
		t.Errorf("no scenario: retries %d, stop-after %d, %v; want 0, 0", c.retries, c.stopAfter, err)
	}
	ps, _ := presets("all")
	var names []string
	for _, p := range ps {
		names = append(names, p.name)
	}
	if !slices.Equal(names, []string{"latency", "room10", "room100", "v2room100", "room1000"}) {
		t.Errorf("all = %v", names)
	}
	if l := ladderFor(1000); l[0] != 50 || !slices.IsSorted(l) {
		t.Errorf("ladder for 1000 members: %v", l)
	}
}

// TestBisect: on a ladder, between a relay's best pass and first failure,
// each step halves the gap, so its sustained rate is known to x1.11 after
// two steps; a relay whose step fails takes no more steps (the others go
// on); nothing is bisected without a pass and a failure to bisect between.
// It drives climbInTurns with relays that pass up to a known capacity.
func TestBisect(t *testing.T) {
	e := &env{c: config{stopAfter: 1}, stderr: io.Discard, start: time.Now()}
	fake := func(name string, capacity int, stepped *[]int, fail error) *climber {
		return &climber{name: name, gone: func() error { return nil }, run: func(rate int) (Result, error) {
			*stepped = append(*stepped, rate)
			if fail != nil && len(*stepped) > 2 {
				return Result{}, fail
			}
			return Result{Sustained: rate <= capacity}, nil
		}}
	}
	capacity := 70_000 // the rate a relay sustains, unknown to the ladder
	for _, tc := range []struct {
		rates    []int
		capacity int
		n        int
		want     []int // the rates bisected, after the ladder's
		best     int   // the best sustained rate after the steps
	}{
		{[]int{63_333, 94_444}, capacity, 1, []int{77_339}, 63_333},
		{[]int{63_333, 94_444}, capacity, 2, []int{77_339, 69_986}, 69_986},
		{[]int{63_333, 94_444}, capacity, 3, []int{77_339, 69_986, 73_570}, 69_986},
		{[]int{63_333, 94_444}, capacity, 0, nil, 63_333},
		{[]int{50}, 0, 2, nil, 0},                        // nothing sustained: no pass to bisect from
		{[]int{63_333, 94_444}, 1 << 30, 2, nil, 94_444}, // no failure: the top of the ladder passed
		{[]int{10, 11}, 10, 2, nil, 10},                  // adjacent: no rate in between
	} {
		var stepped []int
		c := fake("relay", tc.capacity, &stepped, nil)
		var notes []string
		e.climbInTurns("t", time.Second, []*climber{c}, tc.rates, true, tc.n, &notes)
		want := append(slices.Clone(tc.rates), tc.want...)
		if !slices.Equal(stepped, want) || c.lastPass != tc.best || c.broken {
			t.Errorf("%v, capacity %d, %d bisections: stepped %v, best %d; want %v, best %d", tc.rates, tc.capacity, tc.n, stepped, c.lastPass, want, tc.best)
		}
	}
	if got := float64(capacity) / 69_986; got > 1.11 {
		t.Errorf("two steps leave the capacity x%.3f above the best pass", got)
	}

	// Two relays in turns: the order reverses at every round, and the one
	// whose third step fails stops there while the other bisects on.
	var a, b []int
	boom := errors.New("relay exited")
	ca, cb := fake("a", capacity, &a, boom), fake("b", capacity, &b, nil)
	var notes []string
	e.climbInTurns("t", time.Second, []*climber{ca, cb}, []int{63_333, 94_444}, true, 3, &notes)
	if !slices.Equal(a, []int{63_333, 94_444, 77_339}) || !ca.broken || len(e.failures) != 1 || !strings.Contains(e.failures[0], "a: FAILED") {
		t.Errorf("after an error: a stepped %v (broken %v), failures %q", a, ca.broken, e.failures)
	}
	if !slices.Equal(b, []int{63_333, 94_444, 77_339, 69_986, 73_570}) || cb.lastPass != 69_986 {
		t.Errorf("b stepped %v, best %d", b, cb.lastPass)
	}
}

// TestRetry: with --retries 1, a ladder step not sustained is run once more
// at the same rate after every other relay's turn at it, and the rate is
// sustained if that run is; a relay that fails both runs stops there (and
// its bisection steps are retried alike); a step the load tool could not
// offer is not retried; every run is a row.
func TestRetry(t *testing.T) {
	e := &env{c: config{stopAfter: 1, retries: 1}, stderr: io.Discard, start: time.Now()}
	var order []string // every step, "name@rate", in the order run
	fake := func(name string, capacity int, flaky map[int]int, toolAt int) *climber {
		return &climber{name: name, gone: func() error { return nil }, run: func(rate int) (Result, error) {
			order = append(order, fmt.Sprintf("%s@%d", name, rate))
			if rate == toolAt {
				return Result{OfferedRate: rate, ToolLimited: true}, nil
			}
			if flaky[rate] > 0 { // noise: this many runs at rate fail first
				flaky[rate]--
				return Result{OfferedRate: rate}, nil
			}
			return Result{OfferedRate: rate, Sustained: rate <= capacity}, nil
		}}
	}
	rates := []int{63_333, 94_444, 141_666}
	a := fake("a", 1<<30, map[int]int{141_666: 1}, 0) // one noisy run at its top step
	b := fake("b", 70_000, nil, 0)                    // a real limit between 63,333 and 94,444
	var notes []string
	e.climbInTurns("t", time.Second, []*climber{a, b}, rates, true, 1, &notes)
	want := []string{
		"a@63333", "b@63333",
		"b@94444", "a@94444", "b@94444", // b's failure is run again after a's turn
		"a@141666", "a@141666", // the order is a, b again; b stopped; a's noisy run is retried
		"b@77339", "b@77339", // b's bisection step, not sustained either, retried
	}
	if !slices.Equal(order, want) {
		t.Errorf("steps %v\nwant %v", order, want)
	}
	if a.lastPass != 141_666 || a.firstFail != 0 || len(a.rows) != 4 {
		t.Errorf("a: best %d, first failure %d, %d rows; want 141666, none, 4 rows", a.lastPass, a.firstFail, len(a.rows))
	}
	if b.lastPass != 63_333 || b.firstFail != 77_339 || len(b.rows) != 5 {
		t.Errorf("b: best %d, first failure %d, %d rows; want 63333, 77339, 5 rows", b.lastPass, b.firstFail, len(b.rows))
	}
	if !slices.Contains(notes, "a: 141666 chats/s run 2 times: sustained") || !slices.Contains(notes, "b: 94444 chats/s run 2 times: not sustained") {
		t.Errorf("notes %q", notes)
	}
	// The summary takes the sustained run: a's limit is its top step.
	var rows []Result
	for _, c := range []*climber{a, b} {
		for _, r := range c.rows {
			r.Relay = c.name
			rows = append(rows, r)
		}
	}
	for _, s := range summarize(rows, []string{"a", "b"}) {
		if want := map[string]int{"a": 141_666, "b": 63_333}[s.Relay]; s.SustainedRate != want {
			t.Errorf("%s: sustained at %d, want %d", s.Relay, s.SustainedRate, want)
		}
	}

	// A step the load tool could not offer stops the climb, unretried.
	order = nil
	c := fake("c", 1<<30, nil, 94_444)
	e.climbInTurns("t", time.Second, []*climber{c}, rates, true, 0, &notes)
	if !slices.Equal(order, []string{"c@63333", "c@94444"}) || !c.done {
		t.Errorf("tool-limited: steps %v, done %v", order, c.done)
	}
	// --retries 0: as before, one run per step.
	order = nil
	e.c.retries = 0
	d := fake("d", 1<<30, map[int]int{94_444: 1}, 0)
	e.climbInTurns("t", time.Second, []*climber{d}, rates, true, 0, &notes)
	if !slices.Equal(order, []string{"d@63333", "d@94444"}) || d.lastPass != 63_333 {
		t.Errorf("no retries: steps %v, best %d", order, d.lastPass)
	}
}

// TestReceiverGarbage: whatever a relay sends, a receiver counts it and
// never panics or grows: seqs beyond the step, unknown senders, cut texts,
// random bytes.
func TestReceiverGarbage(t *testing.T) {
	r := &receiver{ms: []*member{{idx: 0}, {idx: 1}}, lay: layout{rooms: 1, size: 2, perRoom: 2}, seqs: 10, stepStart: 1}
	r.st.seen = [][]uint64{{0}, {0}, {0}, {0}}
	r.st.last = []int64{-1, -1, -1, -1}
	r.now = 1000
	text := func(s int, q int64) string {
		b := bytes.Repeat([]byte("x"), textLen)
		encodeText(b, s, q, 500)
		return string(b)
	}
	inputs := []string{
		"m0001 says: " + text(1, 9_999_999_999), // a seq this step never sent
		"m0001 says: " + text(77, 1),            // no such sender
		"m0001 says: " + text(1, 3)[:30],        // cut
		"CR2\n{\"t\":\"chat\",\"text\":\"" + text(1, 10) + "\"}\n",
		"CR2\n{\"t\":\"chat\",\"text\":\"",
		"CR2\n",
		"\n\n\n",
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 2000; i++ {
		b := make([]byte, rng.IntN(300))
		for j := range b {
			b[j] = byte(rng.IntN(256))
		}
		if i%2 == 0 {
			b = append([]byte("CR2\n"), b...)
		}
		inputs = append(inputs, string(b))
	}
	for _, in := range inputs {
		r.datagram(0, []byte(in))
	}
	if r.st.delivered != 0 || r.st.other < 6 {
		t.Errorf("garbage: delivered %d, other %d", r.st.delivered, r.st.other)
	}
	r.datagram(0, []byte("m0001 says: "+text(1, 9)))
	if r.st.delivered != 1 {
		t.Errorf("a good chat after the garbage: delivered %d", r.st.delivered)
	}
	var rec natsRec
	for _, in := range inputs {
		natsScan([]byte(in), &rec)
	}
}

// TestSummarize: sustained is the highest sustained offered rate, peak the
// highest deliveries/s, >= only when no step failed, ratios to references.
func TestSummarize(t *testing.T) {
	rs := []Result{
		{Relay: "chatrelay", Members: 100, OfferedRate: 100, DeliveriesPerS: 9_900, Sustained: true, P99us: 300, CPUusPerDeliv: 5},
		{Relay: "chatrelay", Members: 100, OfferedRate: 200, DeliveriesPerS: 19_800, Sustained: true, P99us: 500, CPUusPerDeliv: 4},
		{Relay: "chatrelay", Members: 100, OfferedRate: 400, DeliveriesPerS: 30_000, P99us: 90_000, CPUusPerDeliv: 3},
		{Relay: "chatrelay", Members: 100, OfferedRate: 283, DeliveriesPerS: 25_000, P99us: 50_000},
		{Relay: refBatch, Members: 100, OfferedRate: 100, DeliveriesPerS: 9_900, Sustained: true, P99us: 200, CPUusPerDeliv: 6},
		{Relay: refBatch, Members: 100, OfferedRate: 200, DeliveriesPerS: 19_800, Sustained: true, P99us: 250, CPUusPerDeliv: 6},
	}
	setRatios(rs)
	if rs[0].VsBatch != 1 || rs[2].VsBatch != 0 || rs[3].VsNaive != 0 {
		t.Errorf("step ratios: %v %v %v", rs[0].VsBatch, rs[2].VsBatch, rs[3].VsNaive)
	}
	ss := summarize(rs, []string{"chatrelay", refNaive, refBatch})
	if len(ss) != 2 {
		t.Fatalf("summaries %+v: want chatrelay and batch (naive did not run)", ss)
	}
	c, b := ss[0], ss[1]
	if c.SustainedRate != 200 || c.SustainedPerS != 19_800 || c.PeakPerS != 30_000 || c.PeakRate != 400 || c.AtLeast {
		t.Errorf("chatrelay: %+v", c)
	}
	if c.P99FirstUs != 300 || c.P99SustainedUs != 500 || c.CPUusPerDeliv != 4 {
		t.Errorf("chatrelay latency/CPU: %+v", c)
	}
	if !b.AtLeast || b.SustainedRate != 200 {
		t.Errorf("batch never failed: %+v", b)
	}
	if v := c.Vs[refBatch]; v.Sustained != 1 || v.Peak != 30_000.0/19_800 || v.P99First != 1.5 {
		t.Errorf("chatrelay vs batch: %+v", v)
	}
	if _, ok := c.Vs[refNaive]; ok {
		t.Error("a ratio to a reference that did not run")
	}
}

// TestRunSurvivesAFailingRelay: a relay that dies does not cost the other
// relays' numbers; the run says what failed and exits 1.
func TestRunSurvivesAFailingRelay(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"--relay-bin", "/bin/false", "--relays", "chatrelay,naive", "--members", "4", "--senders", "1",
		"--rates", "100", "--duration", "200ms", "--json"}, &out, &errb)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0], "chatrelay") {
		t.Errorf("failures %q", rep.Failures)
	}
	if rs := rep.Scenarios[0].Results; len(rs) != 1 || rs[0].Relay != refNaive || rs[0].Delivered != rs[0].Expected || rs[0].Expected == 0 {
		t.Errorf("naive's results: %+v", rs)
	}
	if !strings.Contains(errb.String(), "FAILED") {
		t.Errorf("stderr does not say what failed: %s", errb.String())
	}
}

// turnsEnv is an env for runPreset in turns, on the references (chatrelay's
// binary is /bin/false: it cannot start), its stderr in errb.
func turnsEnv(t *testing.T) (e *env, errb *bytes.Buffer) {
	self, devnull := selfAndDevNull(t)
	errb = new(bytes.Buffer)
	c := config{relayBin: "/bin/false", stopAfter: 1, bisect: 1, alternate: true,
		sc: Scenario{Receivers: 2, RcvBuf: 1 << 20, Drain: 3 * time.Second, Budget: defaultBudget, V2Rev: wire.Rev, RefSenders: 2}}
	return &env{c: c, tmp: t.TempDir(), self: self, relayBin: c.relayBin, logs: devnull, stderr: errb, start: time.Now()}, errb
}

// stepsRun lists the steps of scenario that errb says ran, in order, each
// as "relay rate duration".
func stepsRun(errb *bytes.Buffer, scenario string) []string {
	var order []string
	for _, line := range strings.Split(errb.String(), "\n") {
		var name, dur string
		var rate int
		if _, err := fmt.Sscanf(line, "relaybench: "+scenario+": %s %d chats/s for %s", &name, &rate, &dur); err == nil {
			order = append(order, fmt.Sprintf("%s %d %s", strings.TrimSuffix(name, ","), rate, dur))
		}
	}
	return order
}

// TestTurns: on a ladder the relays are all started and logged in at once
// and take turns at each rate, the order reversed at every rate; a relay
// that cannot start is reported and the others still climb; rows come out
// grouped by relay, in the ladder's order.
func TestTurns(t *testing.T) {
	e, errb := turnsEnv(t)
	p := preset{name: "turns", members: 10, senders: 2, rates: []int{200, 400}, ladder: true,
		duration: 250 * time.Millisecond, relays: []string{refNaive, relayClassic, refBatch}}
	var sr ScenarioReport
	e.runPreset(p, &sr)

	order := stepsRun(errb, "turns")
	if want := []string{"naive 200 250ms", "batch 200 250ms", "batch 400 250ms", "naive 400 250ms"}; !slices.Equal(order, want) {
		t.Errorf("steps ran in the order %v, want %v\n%s", order, want, errb.String())
	}
	var got []string
	for _, r := range sr.Results {
		got = append(got, fmt.Sprintf("%s%d", r.Relay, r.OfferedRate))
		if !r.Sustained || r.Delivered != r.Expected || r.Expected == 0 {
			t.Errorf("%s at %d: delivered %d of %d", r.Relay, r.OfferedRate, r.Delivered, r.Expected)
		}
	}
	if want := []string{"naive200", "naive400", "batch200", "batch400"}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	if len(e.failures) != 1 || !strings.Contains(e.failures[0], relayClassic) || !strings.Contains(errb.String(), "FAILED") {
		t.Errorf("failures %q", e.failures)
	}
}

// TestPoolTurns: a relay's turns at one rate make one row whose counts,
// windows and CPU are the turns' sums and whose quantiles are those of all
// its deliveries: a burst of slow deliveries in one turn shows in the
// pooled p99.9 and maximum, and decides the p99 only if it is over 1% of
// them all.
func TestPoolTurns(t *testing.T) {
	turn := func(n int, us int64, cpu float64, keptUp bool) Result {
		r := Result{Relay: relayClassic, OfferedRate: 200, Sent: int64(n) / 19, Expected: int64(n), Delivered: int64(n),
			RxUnits: int64(n), RxBytes: 76 * int64(n), Window: 1, SendWindow: 0.99, RelayCPUs: cpu, ToolCPUcores: 0.2, KeptUp: keptUp}
		r.lat = new(hist)
		for range n {
			r.lat.add(us * 1000)
		}
		r.derive()
		return r
	}
	quick, burst := turn(3800, 200, 0.05, true), turn(38, 5000, 0.01, true)
	p := poolTurns([]Result{quick, quick, burst})
	if p.Delivered != 2*3800+38 || p.Expected != p.Delivered || p.Window != 3 || p.RelayCPUs != 0.11 {
		t.Errorf("pooled counts: delivered %d of %d, window %v, relay CPU %v", p.Delivered, p.Expected, p.Window, p.RelayCPUs)
	}
	if burst.P99us < 4900 || p.P99us > 210 || p.P999us < 4900 || p.MaxUs < 4900 {
		t.Errorf("a burst of 38 slow deliveries in 7,638: turn p99 %.0f µs; pooled p99 %.0f, p99.9 %.0f, max %.0f",
			burst.P99us, p.P99us, p.P999us, p.MaxUs)
	}
	if !p.Sustained || p.DeliveriesPerS != float64(p.Delivered)/3 || p.CPUusPerDeliv != 0.11*1e6/float64(p.Delivered) {
		t.Errorf("pooled: sustained %v, %v deliveries/s, %v µs per delivery", p.Sustained, p.DeliveriesPerS, p.CPUusPerDeliv)
	}
	slow := turn(380, 5000, -1, false)
	if p := poolTurns([]Result{quick, slow}); p.Sustained || p.RelayCPUs != -1 || p.P99us < 4900 {
		t.Errorf("a turn that did not keep up, CPU unknown, 9%% slow: sustained %v, relay CPU %v, p99 %.0f", p.Sustained, p.RelayCPUs, p.P99us)
	}
}

// TestLatencyInTurns: a step in turns (the latency step) starts its relays
// at once and runs its turns alternating, the order reversed every turn,
// and reports one row per relay with every turn's chats and deliveries,
// and each turn's p99 in a note.
func TestLatencyInTurns(t *testing.T) {
	e, errb := turnsEnv(t)
	p := preset{name: "lat", members: 10, senders: 2, rates: []int{200}, turns: 3,
		duration: 600 * time.Millisecond, relays: []string{refNaive, refBatch}}
	var sr ScenarioReport
	e.runPreset(p, &sr)

	order := stepsRun(errb, "lat")
	if want := []string{"naive 200 200ms", "batch 200 200ms", "batch 200 200ms", "naive 200 200ms", "naive 200 200ms", "batch 200 200ms"}; !slices.Equal(order, want) {
		t.Errorf("turns ran in the order %v, want %v\n%s", order, want, errb.String())
	}
	if len(sr.Results) != 2 {
		t.Fatalf("%d rows, want one per relay: %+v", len(sr.Results), sr.Results)
	}
	for i, r := range sr.Results {
		if r.Relay != p.relays[i] || r.Sent != 3*40 || r.Expected != r.Sent*9 || r.Delivered != r.Expected || !r.Sustained {
			t.Errorf("%s: sent %d (want 120 in three turns), delivered %d of %d, sustained %v", r.Relay, r.Sent, r.Delivered, r.Expected, r.Sustained)
		}
		if r.P50us <= 0 || r.P99us < r.P50us || r.MaxUs < r.P99us {
			t.Errorf("%s: latency percentiles make no sense: %+v", r.Relay, r)
		}
	}
	if len(sr.Notes) != 2 || !strings.Contains(sr.Notes[0], "naive at 200 chats/s: p99 of its 3 turns") {
		t.Errorf("notes %q", sr.Notes)
	}
}
