package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestAdminHelpListsEveryVerb(t *testing.T) {
	_, errs, code := adminCLI(t, "/nonexistent", "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, synopsis := range []string{
		"notice [--room ROOM] TEXT...", "who [--room ROOM] [--json]", "rooms [--json]", "topic ROOM TEXT...",
		"kick NAME [--room ROOM] [REASON...]", "ban NAME|IP|CIDR [--for DURATION] [REASON...]",
		"unban NAME|IP|CIDR", "bans [--json]", "mute NAME [--room ROOM] [--for DURATION]",
		"unmute NAME [--room ROOM]", "mutes [--json]", "lockdown [on|off]", "stats [--json]", "7d",
	} {
		if !strings.Contains(errs, synopsis) {
			t.Errorf("relay admin --help lacks %q:\n%s", synopsis, errs)
		}
	}
}

// The moderation verbs through `relay admin`, as an operator types them:
// words and flags go to the relay unchanged, listings print JSON on
// request, and each action is counted in the metrics.
func TestAdminModerationCLI(t *testing.T) {
	d := startDaemon(t, testOptions(t))
	sock := d.l.Admin
	alice := d.join(t, "alice")
	bob := d.join(t, "bob")
	alice.expect("bob joined the chat room")

	out, errs, code := adminCLI(t, sock, "ban", "bob", "--for", "7d", "spamming", "links")
	if code != 0 || out != "banned bob for 7d: spamming links\nremoved 1 members\n" {
		t.Fatalf("ban: exit %d, %q %q", code, out, errs)
	}
	bob.expect("Admin notice: you were removed by the administrator: banned: spamming links")
	bob.expect("EXIT")
	alice.expect("bob was removed by the administrator: banned: spamming links")

	for _, args := range [][]string{{"--json", "bans"}, {"bans", "--json"}} {
		out, errs, code = adminCLI(t, sock, args...)
		var bans []map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &bans) != nil || len(bans) != 1 || bans[0]["target"] != "bob" ||
			bans[0]["reason"] != "spamming links" || bans[0]["left_seconds"] == nil {
			t.Fatalf("%v: exit %d, %q %q", args, code, out, errs)
		}
		if !strings.Contains(out, "\n  ") {
			t.Errorf("%v: not indented for a person:\n%s", args, out)
		}
	}
	if out, _, code = adminCLI(t, sock, "mute", "alice", "--room", "dev"); code != 0 || out != "muted alice in dev\n" {
		t.Fatalf("mute: exit %d, %q", code, out)
	}
	if out, _, code = adminCLI(t, sock, "mutes"); code != 0 || !strings.HasPrefix(out, "alice\tdev\tpermanent\t") {
		t.Fatalf("mutes: exit %d, %q", code, out)
	}
	if out, _, code = adminCLI(t, sock, "lockdown", "on"); code != 0 || out != "lockdown on: new logins only from 127.0.0.0/8, ::1/128\n" {
		t.Fatalf("lockdown on: exit %d, %q", code, out)
	}
	if out, _, code = adminCLI(t, sock, "--json", "lockdown"); code != 0 || !strings.Contains(out, `"message": "lockdown on: `) {
		t.Fatalf("--json lockdown: exit %d, %q", code, out)
	}
	if out, _, code = adminCLI(t, sock, "unban", "BOB"); code != 0 || out != "unbanned bob\n" {
		t.Fatalf("unban: exit %d, %q", code, out)
	}

	// Usage errors stop in the client (exit 2); the relay's refusals are
	// exit 1 with its reason.
	if _, _, code := adminCLI(t, sock, "ban"); code != 2 {
		t.Errorf("ban without a target: exit %d, want 2", code)
	}
	if _, errs, code := adminCLI(t, sock, "ban", "carol", "--fro", "1h"); code != 1 || !strings.Contains(errs, "ban has no flag --fro") {
		t.Errorf("mistyped flag: exit %d, %q", code, errs)
	}
	if _, errs, code := adminCLI(t, sock, "unmute", "alice"); code != 1 || !strings.Contains(errs, "no such mute") {
		t.Errorf("unmute of a room mute without --room: exit %d, %q", code, errs)
	}

	resp, err := http.Get("http://" + d.l.Metrics.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`chatrelay_moderation_actions_total{action="ban"} 1`,
		`chatrelay_moderation_actions_total{action="unban"} 1`,
		`chatrelay_moderation_actions_total{action="mute"} 1`,
		`chatrelay_moderation_actions_total{action="lockdown"} 1`,
		`chatrelay_logins_total{result="lockdown"} 0`,
	} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}
