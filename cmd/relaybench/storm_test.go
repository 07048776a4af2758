//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestJoinStorm runs the joinstorm scenario as a user would (the command,
// flags in, JSON out) with a small storm against the relay built from this
// tree: every member gets its OK, no join notice reaches a member before
// its own OK, and the chat sent afterwards reaches every other member.
func TestJoinStorm(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"--relay-bin", relayBin(t), "--scenario", "joinstorm", "--storm-members", "200", "--storm-rate", "400",
		"--storm-deadline", "10s", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	s := rep.Storm
	if s == nil || len(rep.Scenarios) != 0 {
		t.Fatalf("report: storm %+v, scenarios %d: want the storm only", s, len(rep.Scenarios))
	}
	t.Logf("all OK after %.2f s, %d L sent, rx per member %d/%d/%d, chat last after %.3f s, relay CPU %.2f s",
		s.AllOKAfterS, s.LSent, s.RxMin, s.RxMedian, s.RxMax, s.ChatLastS, s.RelayCPUs)
	if s.Members != 200 || s.Rate != 400 || s.DeadlineS != 10 || s.ChatDeadlineS != 2 || s.Relay != relayClassic {
		t.Errorf("the storm's settings: %+v", s)
	}
	if s.Started != 200 || s.OKs != 200 || s.AllOKAfterS <= 0 || !s.PassOK {
		t.Errorf("%d of %d started, %d got OK (last after %.2f s), pass %v", s.Started, s.Members, s.OKs, s.AllOKAfterS, s.PassOK)
	}
	if s.LSent != 200+s.Retries || s.SendErrors != 0 {
		t.Errorf("%d L sent, %d retries, %d send errors", s.LSent, s.Retries, s.SendErrors)
	}
	if s.Early != 0 || s.Refusals != 0 {
		t.Errorf("before their OK, members got %d join notices and %d other answers (first %q)", s.Early, s.Refusals, s.Refusal)
	}
	// Member 0 is in the room before anyone else and so hears every join
	// (all of them before the storm ends, or later); every member got its OK.
	if s.RxMin < 1 || s.RxMax > s.RxTotal || s.RxMedian < s.RxMin || s.RxMax < s.RxMedian {
		t.Errorf("datagrams per member %d/%d/%d of %d make no sense", s.RxMin, s.RxMedian, s.RxMax, s.RxTotal)
	}
	if s.ChatFrom != "m00000" || s.ChatExpected != 199 || s.ChatReached != 199 || !s.PassChat || s.ChatLastS <= 0 || s.ChatLastS > 2 {
		t.Errorf("chat from %q reached %d of %d (last after %.3f s), pass %v", s.ChatFrom, s.ChatReached, s.ChatExpected, s.ChatLastS, s.PassChat)
	}
	if s.RelayCPUs <= 0 || s.MemberDrops < 0 || s.RelayDrops < 0 {
		t.Errorf("relay CPU %v, drops %d/%d: want all known", s.RelayCPUs, s.MemberDrops, s.RelayDrops)
	}
	var human bytes.Buffer
	printReport(&human, &rep)
	for _, want := range []string{"PASS: all 200 members get OK within 10s", "PASS: the chat after the storm reaches all 199 other members within 2s"} {
		if !strings.Contains(human.String(), want) {
			t.Errorf("the table does not say %q:\n%s", want, human.String())
		}
	}
}

// fakeRelay is a classic relay that misbehaves on purpose: with answer
// false it never answers; otherwise it refuses each member's first L
// ("full"), answers the second with another member's join notice and then
// OK, and fans a chat out to everyone else.
type fakeRelay struct {
	conn *net.UDPConn
	wg   sync.WaitGroup
}

func startFakeRelay(t *testing.T, answer bool) *fakeRelay {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRelay{conn: conn}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		logins := map[netip.AddrPort]int{}
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed
			}
			p := string(buf[:n])
			switch {
			case !answer:
			case strings.HasPrefix(p, "L "):
				logins[from]++
				switch logins[from] {
				case 1:
					_, _ = conn.WriteToUDPAddrPort([]byte("full"), from)
				case 2:
					_, _ = conn.WriteToUDPAddrPort([]byte("someone joined the chat room"), from)
					fallthrough
				default:
					_, _ = conn.WriteToUDPAddrPort([]byte("OK"), from)
				}
			case strings.HasPrefix(p, "C "):
				parts := strings.SplitN(p, " ", 3)
				for to := range logins {
					if to != from {
						_, _ = conn.WriteToUDPAddrPort([]byte(parts[1]+" says: "+parts[2]), to)
					}
				}
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); f.wg.Wait() })
	return f
}

func (f *fakeRelay) addr() netip.AddrPort {
	ap := f.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// TestStormRetriesAndEarlyNotices: a member re-sends L a second after a
// refusal, counts the refusal and a join notice that comes before its OK,
// and the report says so.
func TestStormRetriesAndEarlyNotices(t *testing.T) {
	f := startFakeRelay(t, true)
	sc := stormConfig{Members: 20, Rate: 100, Deadline: 10 * time.Second, ChatDeadline: 2 * time.Second, Receivers: 2, RcvBuf: 1 << 20}
	rep, err := stormRun(f.addr(), sc, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OKs != 20 || !rep.PassOK || rep.LSent != 40 || rep.Retries != 20 {
		t.Errorf("%d OK, %d L sent, %d retries: want 20, 40, 20 (each member's second L gets the OK)", rep.OKs, rep.LSent, rep.Retries)
	}
	if rep.Refusals != 20 || rep.Refusal != "full" || rep.Early != 20 {
		t.Errorf("refusals %d (%q), early %d: want 20 (\"full\"), 20", rep.Refusals, rep.Refusal, rep.Early)
	}
	if rep.LoginP50S < 0.9 {
		t.Errorf("login p50 %.3f s: the retry came less than a second after the first L", rep.LoginP50S)
	}
	if rep.RxMin != 3 || rep.RxMax != 3 {
		t.Errorf("datagrams per member %d..%d: want 3 (refusal, notice, OK)", rep.RxMin, rep.RxMax)
	}
	if rep.ChatReached != 19 || !rep.PassChat {
		t.Errorf("chat reached %d of 19", rep.ChatReached)
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "20 join notices reached members before their own OK") {
		t.Errorf("notes %q do not mention the early notices", rep.Notes)
	}
}

// TestStormDeadline: against a relay that never answers, the run ends at
// its deadline, every member having sent L once a second until then, and
// both requirements fail.
func TestStormDeadline(t *testing.T) {
	f := startFakeRelay(t, false)
	sc := stormConfig{Members: 10, Rate: 100, Deadline: 1500 * time.Millisecond, ChatDeadline: time.Second, Receivers: 1}
	began := time.Now()
	rep, err := stormRun(f.addr(), sc, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("took %v with a 1.5 s deadline", took)
	}
	if rep.OKs != 0 || rep.PassOK || rep.PassChat || rep.ChatFrom != "" || rep.Started != 10 {
		t.Errorf("report %+v: want 10 started, none OK, no chat, both FAIL", rep)
	}
	if rep.LSent != 20 {
		t.Errorf("%d L sent: want 20 (at 0-90 ms and a second later; the next would be after the deadline)", rep.LSent)
	}
	var out bytes.Buffer
	printStorm(&out, rep)
	if !strings.Contains(out.String(), "FAIL: all 10 members get OK within 1.5s: 0 did") || !strings.Contains(out.String(), "no member has OK") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestParseStormFlags(t *testing.T) {
	c, err := parse([]string{"--scenario", "joinstorm"}, &bytes.Buffer{})
	if err != nil || c.storm.Members != 10000 || c.storm.Rate != 1000 || c.storm.Deadline != 30*time.Second || c.storm.ChatDeadline != 2*time.Second {
		t.Errorf("defaults: %+v, %v", c.storm, err)
	}
	c, err = parse([]string{"--storm-members", "2000"}, &bytes.Buffer{})
	if err != nil || c.scenario != "joinstorm" || c.storm.Members != 2000 {
		t.Errorf("--storm-members alone: scenario %q, %+v, %v", c.scenario, c.storm, err)
	}
	bad := [][]string{
		{"--scenario", "room100", "--storm-members", "100"},
		{"--scenario", "joinstorm", "--members", "100"},
		{"--scenario", "joinstorm", "--relays", "naive"},
		{"--scenario", "joinstorm", "--plot", "x"},
		{"--storm-members", "1"},
		{"--storm-members", "20001"},
		{"--storm-rate", "0"},
		{"--storm-deadline", "0s"},
		{"--storm-chat-deadline", "-1s"},
	}
	for _, args := range bad {
		if _, err := parse(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parse(%q): no error", args)
		}
	}
	if ps, err := presets("joinstorm"); err != nil || len(ps) != 0 {
		t.Errorf("presets(joinstorm) = %v, %v: want no ladder", ps, err)
	}
}

// TestUDPDrops: datagrams the kernel drops at a full socket are counted
// for that socket, as the relay's (bound to the address) and not as a
// member's (connected to it).
func TestUDPDrops(t *testing.T) {
	full, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	_ = full.SetReadBuffer(4096) // never read: it fills at once
	ap := full.LocalAddr().(*net.UDPAddr).AddrPort()
	addr := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	m, err := openUDPMember("m", 0, 0, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	msg := bytes.Repeat([]byte("x"), 1000)
	for i := 0; i < 100; i++ {
		_ = writeAll(m.fd, msg, time.Now().Add(time.Second))
	}
	members, relay, err := udpDrops(addr)
	if err != nil {
		t.Fatal(err)
	}
	if members != 0 || relay < 50 {
		t.Errorf("drops: members %d, relay %d; want 0 and most of 100", members, relay)
	}
}
