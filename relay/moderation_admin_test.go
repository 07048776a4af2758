package relay_test

import (
	"encoding/json"
	"net"
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
)

// modCounts is an Observer that counts moderation actions.
type modCounts struct {
	relay.NopObserver
	mu sync.Mutex
	n  map[string]int
}

func (o *modCounts) Moderation(a string) { o.mu.Lock(); o.n[a]++; o.mu.Unlock() }
func (o *modCounts) get(a string) int    { o.mu.Lock(); defer o.mu.Unlock(); return o.n[a] }

// modRelay starts a relay on a frozen clock that counts moderation and
// records its info logs.
func modRelay(t *testing.T, opts ...func(*relay.Config)) (*relaytest.Relay, *clock, *modCounts, *observer.ObservedLogs) {
	t.Helper()
	clk := newClock()
	counts := &modCounts{n: map[string]int{}}
	core, logs := observer.New(zapcore.InfoLevel)
	r := relaytest.Start(t, append([]func(*relay.Config){func(c *relay.Config) {
		c.Now, c.Observer, c.Logger = clk.Now, counts, zap.New(core)
	}}, opts...)...)
	return r, clk, counts, logs
}

// dialFrom is dial from a chosen loopback address (all of 127/8 is local).
func dialFrom(t *testing.T, r *relaytest.Relay, src string) *client {
	t.Helper()
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0)), net.UDPAddrFromAddrPort(r.Addr))
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c, buf: make([]byte, 64<<10)}
}

// adminOK runs req and fails unless it succeeds with exactly want.
func adminOK(t *testing.T, r *relaytest.Relay, req string, want ...string) {
	t.Helper()
	lines, final := admin(t, r, req)
	if final != relay.AdminOK || strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s: %q then %q, want %q then ok", req, lines, final, want)
	}
}

// adminErr runs req and fails unless it fails with an error containing want.
func adminErr(t *testing.T, r *relaytest.Relay, req, want string) {
	t.Helper()
	lines, final := admin(t, r, req)
	if len(lines) != 0 || !strings.HasPrefix(final, relay.AdminErrPrefix) || !strings.Contains(final, want) {
		t.Fatalf("%s: %q then %q, want an error with %q", req, lines, final, want)
	}
}

// admits checks Server.admit for name from ip: ok, or refused with code
// and reason.
func admits(t *testing.T, r *relaytest.Relay, name, ip, code, reason string) {
	t.Helper()
	gotCode, gotReason, ok := relay.Admit(r.Server, name, netip.MustParseAddr(ip))
	if ok != (code == "") || gotCode != code || gotReason != reason {
		t.Fatalf("admit %s from %s = %q %q %v, want %q %q", name, ip, gotCode, gotReason, ok, code, reason)
	}
}

// needsAdmitWired skips what only a login through the core can show.
func needsAdmitWired(t *testing.T) {
	t.Helper()
	if !relay.AdmitWired {
		t.Skip("the login path does not call admit yet (relay.AdmitWired)")
	}
}

// loginRefused logs name in from src, in a subtest that needs admit
// wired into the login path, and expects the refusal want.
func loginRefused(t *testing.T, r *relaytest.Relay, src, name, want string) {
	t.Helper()
	t.Run("login refused", func(t *testing.T) {
		needsAdmitWired(t)
		c := dialFrom(t, r, src).in(t)
		c.send("L " + name)
		c.expect(want)
	})
}

type banJSON struct {
	Target      string `json:"target"`
	Kind        string `json:"kind"`
	Reason      string `json:"reason"`
	By          string `json:"by"`
	Set         string `json:"set"`
	Expires     string `json:"expires"`
	LeftSeconds int64  `json:"left_seconds"`
}

func bansJSON(t *testing.T, r *relaytest.Relay) []banJSON {
	t.Helper()
	lines, final := admin(t, r, "bans --json")
	if final != relay.AdminOK || len(lines) != 1 {
		t.Fatalf("bans --json: %q then %q, want one line", lines, final)
	}
	var bans []banJSON
	if err := json.Unmarshal([]byte(lines[0]), &bans); err != nil {
		t.Fatalf("bans --json: %v in %s", err, lines[0])
	}
	return bans
}

func TestAdminBanName(t *testing.T) {
	r, clk, counts, logs := modRelay(t)
	alice := dial(t, r).login("alice")
	bob := dial(t, r).login("bob")
	alice.expect("bob joined the chat room")

	// Banning removes alice at once: she is told why, the room sees it.
	adminOK(t, r, "ban ALICE --for 1h spamming links", "banned ALICE for 1h: spamming links", "removed 1 members")
	alice.expect("Admin notice: you were removed by the administrator: banned: spamming links")
	alice.expect("EXIT")
	bob.expect("alice was removed by the administrator: banned: spamming links")
	if lines, _ := admin(t, r, "who"); len(lines) != 1 || !strings.HasPrefix(lines[0], "bob\t") {
		t.Fatalf("who after the ban: %q", lines)
	}
	if n := counts.get(relay.ModBan); n != 1 {
		t.Errorf("%d bans counted, want 1", n)
	}
	ban := logs.FilterMessage("admin ban").All()
	if len(ban) != 1 || ban[0].ContextMap()["target"] != "ALICE" || ban[0].ContextMap()["reason"] != "spamming links" ||
		ban[0].ContextMap()["removed"] != int64(1) {
		t.Fatalf("admin ban log: %+v", ban)
	}

	// The name is refused from any address, in any case or width.
	admits(t, r, "alice", "127.0.0.3", relay.LoginBanned, "you are banned: spamming links (1h left)")
	admits(t, r, "Ａｌｉｃｅ", "127.0.0.1", relay.LoginBanned, "you are banned: spamming links (1h left)")
	admits(t, r, "bob", "127.0.0.3", "", "")
	loginRefused(t, r, "127.0.0.3", "alice", "you are banned: spamming links (1h left)")

	bans := bansJSON(t, r)
	if len(bans) != 1 || bans[0].Target != "ALICE" || bans[0].Kind != relay.BanName || bans[0].Reason != "spamming links" ||
		bans[0].LeftSeconds != 3600 || bans[0].Set != "2026-11-23T12:00:00Z" || bans[0].Expires != "2026-11-23T13:00:00Z" || bans[0].By == "" {
		t.Fatalf("bans --json: %+v", bans)
	}
	adminOK(t, r, "bans", "ALICE\tname\t1h\t"+bans[0].By+"\t2026-11-23T12:00:00Z\tspamming links")

	// It ends by itself.
	clk.Advance(time.Hour)
	admits(t, r, "alice", "127.0.0.3", "", "")
	adminOK(t, r, "bans")
	if lines, _ := admin(t, r, "bans --json"); len(lines) != 1 || lines[0] != "[]" {
		t.Fatalf("empty bans --json: %q", lines)
	}

	// unban lifts a ban without --for.
	adminOK(t, r, "ban alice", "banned alice", "removed 0 members")
	admits(t, r, "alice", "127.0.0.3", relay.LoginBanned, "you are banned")
	adminOK(t, r, "unban Alice", "unbanned alice")
	admits(t, r, "alice", "127.0.0.3", "", "")
	adminErr(t, r, "unban alice", "no such ban")
	if n := counts.get(relay.ModUnban); n != 1 {
		t.Errorf("%d unbans counted, want 1", n)
	}
	t.Run("login after unban", func(t *testing.T) {
		needsAdmitWired(t)
		dialFrom(t, r, "127.0.0.3").in(t).login("alice")
	})
}

func TestAdminBanAddress(t *testing.T) {
	r, _, _, _ := modRelay(t)
	alice := dial(t, r).login("alice")
	carol := dialFrom(t, r, "127.0.0.2").login("carol")
	alice.expect("carol joined the chat room")
	dave := dialFrom(t, r, "127.0.0.5").login("dave")
	alice.expect("dave joined the chat room")
	carol.expect("dave joined the chat room")

	// An IP ban removes whoever is on that address, whatever the name.
	adminOK(t, r, "ban 127.0.0.2", "banned 127.0.0.2", "removed 1 members")
	carol.expect("Admin notice: you were removed by the administrator: banned")
	carol.expect("EXIT")
	alice.expect("carol was removed by the administrator: banned")
	dave.expect("carol was removed by the administrator: banned")
	admits(t, r, "anyone", "127.0.0.2", relay.LoginBanned, "you are banned")
	admits(t, r, "anyone", "::ffff:127.0.0.2", relay.LoginBanned, "you are banned")
	admits(t, r, "carol", "127.0.0.1", "", "") // the name is not banned

	// A CIDR ban: 127.0.0.4/30 holds dave's address, not alice's.
	adminOK(t, r, "ban 127.0.0.6/30 --for 7d lab machines", "banned 127.0.0.4/30 for 7d: lab machines", "removed 1 members")
	dave.expect("Admin notice: you were removed by the administrator: banned: lab machines")
	dave.expect("EXIT")
	alice.expect("dave was removed by the administrator: banned: lab machines")
	admits(t, r, "erin", "127.0.0.7", relay.LoginBanned, "you are banned: lab machines (7d left)")
	admits(t, r, "erin", "127.0.0.8", "", "")
	loginRefused(t, r, "127.0.0.2", "erin", "you are banned")

	bans := bansJSON(t, r)
	if len(bans) != 2 || bans[0].Target != "127.0.0.2" || bans[0].Kind != relay.BanIP || bans[0].Expires != "" ||
		bans[1].Target != "127.0.0.4/30" || bans[1].Kind != relay.BanCIDR || bans[1].LeftSeconds != 7*86400 {
		t.Fatalf("bans --json: %+v", bans)
	}
	adminOK(t, r, "unban 127.0.0.2", "unbanned 127.0.0.2")
	admits(t, r, "carol", "127.0.0.2", "", "")
	adminErr(t, r, "unban 127.0.0.5", "no such ban") // inside a prefix is not the prefix
	adminErr(t, r, "ban 10.0.0.0/33", "not a name, an IP address or a CIDR prefix")
	adminErr(t, r, "ban alice --for soon", "bad duration")
	adminErr(t, r, "ban alice --fro 1h", "ban has no flag --fro")
	adminErr(t, r, "ban alice bad\x1b[2Jreason", "control character")
	if lines, _ := admin(t, r, "who"); len(lines) != 1 || !strings.HasPrefix(lines[0], "alice\t") {
		t.Fatalf("who: %q (failed requests must change nothing)", lines)
	}
}

func TestAdminLockdown(t *testing.T) {
	// Only 127.0.0.1 is exempt, so a client on 127.0.0.2 is not.
	r, _, counts, logs := modRelay(t, func(c *relay.Config) {
		c.Flood = &relay.FloodSettings{Enabled: false, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	})
	early := dialFrom(t, r, "127.0.0.2").login("early")

	adminOK(t, r, "lockdown", "lockdown off")
	adminOK(t, r, "lockdown on", "lockdown on: new logins only from 127.0.0.1/32")
	adminOK(t, r, "lockdown", "lockdown on: new logins only from 127.0.0.1/32")
	admits(t, r, "bob", "127.0.0.2", relay.LoginLockdown, "the relay is in lockdown: no new logins")
	admits(t, r, "bob", "127.0.0.1", "", "")
	loginRefused(t, r, "127.0.0.2", "bob", "the relay is in lockdown: no new logins")
	t.Run("exempt login", func(t *testing.T) {
		needsAdmitWired(t)
		dialFrom(t, r, "127.0.0.1").in(t).login("carol")
		early.in(t).expect("carol joined the chat room")
	})
	// Who was in stays in, and may still repeat its login.
	early.sync("early")

	adminOK(t, r, "lockdown off", "lockdown off")
	admits(t, r, "bob", "127.0.0.2", "", "")
	adminErr(t, r, "lockdown maybe", "usage: lockdown on|off")
	if n := counts.get(relay.ModLockdown); n != 2 {
		t.Errorf("%d lockdown actions counted, want 2", n)
	}
	if n := logs.FilterMessage("admin lockdown").Len(); n != 2 {
		t.Errorf("%d lockdown actions logged, want 2", n)
	}
}

func TestAdminMute(t *testing.T) {
	r, clk, counts, _ := modRelay(t)
	dial(t, r).login("alice")

	adminOK(t, r, "mute ALICE --room Dev --for 10m", "muted alice in Dev for 10m")
	adminOK(t, r, "mute bob", "muted bob")
	lines, final := admin(t, r, "mutes")
	if final != relay.AdminOK || len(lines) != 2 || !strings.HasPrefix(lines[0], "alice\tDev\t10m\t") || !strings.HasPrefix(lines[1], "bob\t*\tpermanent\t") {
		t.Fatalf("mutes: %q %q", lines, final)
	}
	lines, _ = admin(t, r, "mutes --json")
	var mutes []struct {
		Name, Room  string
		LeftSeconds int64 `json:"left_seconds"`
	}
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &mutes) != nil || len(mutes) != 2 ||
		mutes[0].Name != "alice" || mutes[0].Room != "Dev" || mutes[0].LeftSeconds != 600 || mutes[1].Room != "" {
		t.Fatalf("mutes --json: %q", lines)
	}

	// What the core asks before it broadcasts a chat.
	if reason, muted := relay.MutedIn(r.Server, "alice", "dev"); !muted || reason != "message not sent: you are muted in Dev (10m left)" {
		t.Fatalf("alice in dev: %q %v", reason, muted)
	}
	if _, muted := relay.MutedIn(r.Server, "alice", ""); muted {
		t.Fatal("a room mute holds relay-wide")
	}
	clk.Advance(10 * time.Minute)
	if _, muted := relay.MutedIn(r.Server, "alice", "dev"); muted {
		t.Fatal("the mute outlived --for")
	}

	adminOK(t, r, "unmute BOB", "unmuted bob")
	adminErr(t, r, "unmute bob", "no such mute")
	adminErr(t, r, "mute alice --room @inbox", "invalid room")
	adminErr(t, r, "mute two words", `unexpected "words"`)
	adminOK(t, r, "mutes")
	if counts.get(relay.ModMute) != 2 || counts.get(relay.ModUnmute) != 1 {
		t.Errorf("counted %d mutes and %d unmutes, want 2 and 1", counts.get(relay.ModMute), counts.get(relay.ModUnmute))
	}
}

// Every answer and refusal follows --lang.
func TestAdminModerationChinese(t *testing.T) {
	r, _, _, _ := modRelay(t, func(c *relay.Config) { c.Lang = "zh" })
	xiaohong := dial(t, r).login("小红")
	adminOK(t, r, "ban 小红 --for 1d 刷屏", "已封禁 小红 期限 1天: 刷屏", "已移出 1 名成员")
	xiaohong.expect("管理员消息: 你已被管理员移出聊天室: 已被封禁: 刷屏")
	xiaohong.expect("EXIT")
	admits(t, r, "小红", "127.0.0.3", relay.LoginBanned, "你已被封禁: 刷屏 (剩余 1天)")
	adminOK(t, r, "unban 小红", "已解封 小红")
	adminOK(t, r, "mute 小明 --room 二班", "已禁言 小明 (聊天室 二班)")
	adminOK(t, r, "unmute 小明 --room 二班", "已解除禁言 小明 (聊天室 二班)")
	adminOK(t, r, "lockdown on", "已锁定: 只接受来自 127.0.0.0/8, ::1/128 的新登录")
	admits(t, r, "小明", "::ffff:10.0.0.1", relay.LoginLockdown, "服务器已锁定: 暂不接受新登录")
	adminOK(t, r, "lockdown off", "已解除锁定")
}

// who and stats answer --json on the socket, one line each.
func TestAdminListingsJSON(t *testing.T) {
	r, _, _, _ := modRelay(t)
	dial(t, r).login("alice")
	lines, final := admin(t, r, "who --json")
	var who []struct {
		Name, Addr, Proto string
		IdleSeconds       *float64 `json:"idle_seconds"`
	}
	if final != relay.AdminOK || len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &who) != nil ||
		len(who) != 1 || who[0].Name != "alice" || who[0].Proto != "classic" || who[0].IdleSeconds == nil {
		t.Fatalf("who --json: %q %q", lines, final)
	}
	lines, final = admin(t, r, "stats --json")
	var stats map[string]int64
	if final != relay.AdminOK || len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &stats) != nil || stats["members"] != 1 || stats["logins"] != 1 {
		t.Fatalf("stats --json: %q %q", lines, final)
	}
	if !strings.HasPrefix(lines[0], `{"members":1,"uptime_seconds":`) {
		t.Errorf("stats --json keeps the text's order: %s", lines[0])
	}
	adminErr(t, r, "notice --json", "notice has no flag --json")
	adminErr(t, r, "who bob", `who: unexpected "bob"`)
}
