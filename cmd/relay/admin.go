package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/chatrelay/chatrelay/relay"
)

// runAdmin is `relay admin`: it sends one request to a running relay's
// admin socket and prints the answer. Exit 0 on success, 1 on failure, 2 on
// a usage error.
func runAdmin(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay admin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("admin-socket", defaultAdminSocket(), "`path` of the relay's admin socket")
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: relay admin [--admin-socket PATH] [--json] COMMAND
Commands:
  notice TEXT...         send TEXT to every member as an admin notice
  who                    list members: NAME<TAB>ADDR<TAB>PROTO<TAB>IDLE
  kick NAME [REASON...]  remove NAME; it gets REASON and EXIT, the others a notice
  stats                  the relay's counters
Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	req, err := adminLine(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "relay admin: %v\n", err)
		fs.Usage()
		return 2
	}
	lines, err := adminCall(*path, req)
	if err != nil {
		fmt.Fprintf(stderr, "relay admin: %v\n", err)
		return 1
	}
	if *asJSON {
		return printJSON(fs.Arg(0), lines, stdout, stderr)
	}
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	return 0
}

// adminLine builds the one-line request from the command words.
func adminLine(words []string) (string, error) {
	if len(words) == 0 {
		return "", errors.New("missing command")
	}
	cmd := words[0]
	rest := strings.Join(words[1:], " ")
	switch cmd {
	case "notice", "kick":
		if strings.TrimSpace(rest) == "" {
			return "", fmt.Errorf("%s needs an argument", cmd)
		}
	case "who", "stats":
		if rest != "" {
			return "", fmt.Errorf("%s takes no argument", cmd)
		}
	default:
		return "", fmt.Errorf("unknown command %q", cmd)
	}
	if strings.ContainsAny(rest, "\r\n") {
		return "", errors.New("the request must be one line")
	}
	return strings.TrimSpace(cmd + " " + rest), nil
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

// whoEntry is one member in `who --json`.
type whoEntry struct {
	Name        string  `json:"name"`
	Addr        string  `json:"addr"`
	Proto       string  `json:"proto"`
	IdleSeconds float64 `json:"idle_seconds"`
}

func printJSON(cmd string, lines []string, stdout, stderr io.Writer) int {
	var v any
	switch cmd {
	case "who":
		who := []whoEntry{}
		for _, l := range lines {
			f := strings.Split(l, "\t")
			if len(f) != 4 {
				fmt.Fprintf(stderr, "relay admin: unexpected who line %q\n", l)
				return 1
			}
			idle, _ := time.ParseDuration(f[3])
			who = append(who, whoEntry{Name: f[0], Addr: f[1], Proto: f[2], IdleSeconds: idle.Seconds()})
		}
		v = who
	case "stats":
		stats := map[string]int64{}
		for _, l := range lines {
			k, val, _ := strings.Cut(l, " ")
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				fmt.Fprintf(stderr, "relay admin: unexpected stats line %q\n", l)
				return 1
			}
			stats[k] = n
		}
		v = stats
	default:
		v = map[string]any{"ok": true, "message": strings.Join(lines, "\n")}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "relay admin: %v\n", err)
		return 1
	}
	return 0
}
