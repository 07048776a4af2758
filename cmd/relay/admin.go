package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/chatrelay/chatrelay/relay"
)

// runAdmin is `relay admin`: it sends one request to a running relay's
// admin socket and prints the answer. Exit 0 on success, 1 on failure, 2 on
// a usage error. The words after the command, flags included, go to the
// relay as they are: the relay reads them (relay/admin.go).
func runAdmin(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay admin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("admin-socket", defaultAdminSocket(), "`path` of the relay's admin socket")
	asJSON := fs.Bool("json", false, "print the answer as JSON (listings: as the relay lists them)")
	fs.Usage = func() { adminUsage(fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	req, verb, err := adminLine(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "relay admin: %v\n", err)
		fs.Usage()
		return 2
	}
	listJSON := verb.list && (*asJSON || slices.Contains(fs.Args()[1:], "--json"))
	if listJSON && !slices.Contains(fs.Args()[1:], "--json") {
		req += " --json"
	}
	lines, err := adminCall(*path, req)
	if err != nil {
		fmt.Fprintf(stderr, "relay admin: %v\n", err)
		return 1
	}
	switch {
	case listJSON:
		return printListJSON(lines, stdout, stderr)
	case *asJSON:
		return printJSON(map[string]any{"ok": true, "message": strings.Join(lines, "\n")}, stdout, stderr)
	}
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	return 0
}

// adminVerb is one command of `relay admin`: how --help shows it, and the
// little the client checks before sending (the relay checks the rest).
type adminVerb struct {
	name     string
	synopsis string
	help     string
	minArgs  int  // words required after the command
	list     bool // a listing: --json asks the relay for JSON
}

// adminVerbs lists every command in the order --help shows them.
var adminVerbs = []adminVerb{
	{"notice", "notice [--room ROOM] TEXT...", "send TEXT as an admin notice to main (every member starts there) or to ROOM", 1, false},
	{"who", "who [--room ROOM]", "list members, or ROOM's: NAME<TAB>ADDR<TAB>PROTO<TAB>IDLE", 0, true},
	{"rooms", "rooms", "list the rooms: NAME<TAB>MEMBERS<TAB>FLAGS<TAB>TOPIC", 0, true},
	{"topic", "topic ROOM TEXT...", "set ROOM's topic, announced in it; the room stays while empty", 2, false},
	{"kick", "kick NAME [--room ROOM] [REASON...]", "remove NAME from the relay, or from ROOM; it gets REASON, the others a notice", 1, false},
	{"ban", "ban NAME|IP|CIDR [--for DURATION] [REASON...]", "refuse NAME from anywhere, or any name from IP or CIDR; removes who is online", 1, false},
	{"unban", "unban NAME|IP|CIDR", "lift a ban", 1, false},
	{"bans", "bans", "list bans: TARGET<TAB>KIND<TAB>LEFT<TAB>BY<TAB>SINCE<TAB>REASON", 0, true},
	{"mute", "mute NAME [--room ROOM] [--for DURATION]", "refuse NAME's chats, everywhere or in ROOM; nobody sees them", 1, false},
	{"unmute", "unmute NAME [--room ROOM]", "lift a mute", 1, false},
	{"mutes", "mutes", "list mutes: NAME<TAB>ROOM<TAB>LEFT<TAB>BY<TAB>SINCE (ROOM * is everywhere)", 0, true},
	{"lockdown", "lockdown [on|off]", "refuse new logins except from --limit-exempt; alone: show the state", 0, false},
	{"stats", "stats", "the relay's counters", 0, true},
}

func adminUsage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: relay admin [--admin-socket PATH] [--json] COMMAND\nCommands:\n")
	for _, v := range adminVerbs {
		synopsis := v.synopsis
		if v.list {
			synopsis += " [--json]"
		}
		fmt.Fprintf(w, "  %s\n      %s\n", synopsis, v.help)
	}
	fmt.Fprintf(w, `DURATION is e.g. 90s, 30m, 12h or 7d; without --for a ban or mute lasts until lifted.
--json before the command or after a listing asks for JSON (relay admin bans --json).
Flags:
`)
	fs.PrintDefaults()
}

// adminLine builds the one-line request from the command words.
func adminLine(words []string) (string, adminVerb, error) {
	if len(words) == 0 {
		return "", adminVerb{}, errors.New("missing command")
	}
	i := slices.IndexFunc(adminVerbs, func(v adminVerb) bool { return v.name == words[0] })
	if i < 0 {
		return "", adminVerb{}, fmt.Errorf("unknown command %q", words[0])
	}
	v := adminVerbs[i]
	rest := strings.Join(words[1:], " ")
	if len(strings.Fields(rest)) < v.minArgs {
		return "", v, fmt.Errorf("%s needs an argument", v.name)
	}
	if strings.ContainsAny(rest, "\r\n") {
		return "", v, errors.New("the request must be one line")
	}
	return strings.TrimSpace(v.name + " " + rest), v, nil
}

// adminCall sends req and returns the answer's data lines, or the relay's
// error.
func adminCall(path, req string) ([]string, error) {
	c, err := net.DialTimeout("unix", path, waitTimeout)
	if err != nil {
		return nil, fmt.Errorf("no relay at %s: %w", path, unwrapOp(err))
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := io.WriteString(c, req+"\n"); err != nil {
		return nil, fmt.Errorf("send to %s: %w", path, err)
	}
	var lines []string
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == relay.AdminOK:
			return lines, nil
		case strings.HasPrefix(l, relay.AdminErrPrefix):
			return nil, errors.New(strings.TrimPrefix(l, relay.AdminErrPrefix))
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read from %s: %w", path, err)
	}
	return nil, fmt.Errorf("the relay at %s closed the connection without an answer", path)
}

// printListJSON prints a listing's answer, one JSON value, indented.
func printListJSON(lines []string, stdout, stderr io.Writer) int {
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(strings.Join(lines, "\n")), "", "  "); err != nil {
		fmt.Fprintf(stderr, "relay admin: the relay's answer is not JSON: %v\n", err)
		return 1
	}
	b.WriteByte('\n')
	if _, err := stdout.Write(b.Bytes()); err != nil {
		fmt.Fprintf(stderr, "relay admin: %v\n", err)
		return 1
	}
	return 0
}

func printJSON(v any, stdout, stderr io.Writer) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "relay admin: %v\n", err)
		return 1
	}
	return 0
}
