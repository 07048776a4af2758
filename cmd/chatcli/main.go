// Command chatcli is a chat client for a chatrelay relay: it speaks the
// extended protocol v2 (ordered, gap-free, acknowledged; see
// docs/PROTOCOL.md and package relay/client) and falls back to the classic
// UDP protocol (`L name`, `C name text`, `Q name`) for relays that do not
// answer v2.
//
// On a terminal it runs a full-screen chat (bubbletea): received lines scroll
// above, the line editor sits at the bottom. When stdin is not a terminal it
// runs in script mode: every input line is one chat message and every
// received datagram is one output line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/charmbracelet/x/term"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// defaultAddr is the relay address used when none is given.
const defaultAddr = "127.0.0.1:9999"

var usageText = `Usage: chatcli [--name NAME] [--room ROOM] [--proto auto|v2|classic] [--json] [HOST:PORT[,HOST:PORT...]]

Chat through a chatrelay relay at HOST:PORT (default ` + defaultAddr + `).

Several relays (the nodes of a cluster): give their addresses separated by
commas, without spaces, e.g. 10.0.0.1:9999,10.0.0.2:9999. chatcli logs in
at the first that answers (moving on at once from one where nothing
listens, after about 3 s from a silent one). With v2, when the relay in use
stops answering (nothing from it for 8 s), chatcli switches to the next
address, round robin, and resumes the session there: nothing is lost and
nobody sees you leave. If that relay does not know the session, chatcli
logs in again there and rejoins your rooms, and says so. It keeps going
round the addresses (waiting up to 10 s between rounds) until one answers
or you leave. The terminal shows "relay A not answering: switched to B"
(--lang zh: "服务器 A 无响应: 已切换到 B"); --json prints
{"type":"failover","from":A,"to":B}. The classic protocol uses the first
address that answers its login and stays with it.

Protocol (--proto): v2 is the extended protocol: messages arrive in the
room's order, each once, lost ones are repaired, sends are retransmitted
until the relay confirms them, and the session survives address changes and
relay restarts (it logs in again by itself, back in its rooms). classic is
the old text protocol. auto (the default) tries v2 and falls back to classic
only after 6 hellos over more than 3 s got no answer at all (a classic-only
relay ignores v2, and loss looks the same, so auto waits that long).

Rooms and direct messages (v2, with a relay that has them): everyone starts
in the room "main"; --room ROOM joins ROOM after login and starts there.
These commands work in both modes (the current room is the last one joined,
or, in the terminal, the one on screen):

` + "  " + strings.Join(commandHelp, "\n  ") + `

Other lines are messages for the current room. Another /command is refused.
A relay without rooms (v2 revision 0, or classic) answers these commands
with an error; with --proto classic every line but a quit is a message.

Terminal mode (stdin and stdout are terminals): a full-screen chat. Without
--name it asks for a name; a refused name shows the relay's reason and asks
again. Enter sends the line. Each room, and the direct messages ("DMs"), has
its own view: Ctrl-N and Ctrl-P switch to the next and previous one, Alt-1
to Alt-9 to the first nine; the status line lists them with their unread
counts, the current one in brackets. In the DMs view a line answers the
last person who wrote to you (or whom you wrote to). Lines carry the time
they arrived; each name has its own colour. Tab completes commands and
names, Up/Down recall earlier lines, PgUp/PgDn (Shift-Up/Down: one line)
scroll the messages, Ctrl-End goes back to the end. /help lists all this.
The status line also shows reconnections. "quit", "/quit", Ctrl-D on an
empty line or Ctrl-C leave the chat.

Script mode (otherwise): each input line is sent as one chat message (or
runs a command, above) and each received message is printed as one line.
Without --name the first input line is the name; if the relay refuses it,
the reason goes to stderr and the next line is tried as the name. With
--name a refused name prints the reason to stderr and
exits 1, since there is nobody to ask. A "quit" or "/quit" line, or the end
of input, leaves the chat (v2: after the relay confirmed every message). Lines longer than one
datagram are sent as several messages. With v2 the output shows the other
members' messages, joins, leaves and notices in room order, backlog
included, those outside main prefixed "[ROOM] "; direct messages as "NAME
whispers: TEXT"; your own messages are not printed; missed messages, and
your own joins and parts, print a "* ..." line, as do /rooms, /who and
/topic; refusals and reconnections are reported on stderr.

--json (script mode): one JSON object per line per event, "type" one of
chat, join, leave, notice, timeout, missed, dm, joined, parted, throttled,
error, failover. Every room event carries "room". A chat is exactly
{"type":"chat","room":ROOM,"from":NAME,"text":TEXT,"seq":N}, your own
included; join, leave and timeout carry "room", "from" and "seq" (leave a
"reason" for a kick; a batch in a big room adds "names", the first five,
and "count"), notice "room", "text", "seq" and "topic" when it announces a
new one; missed "room", "from_seq", "to_seq" and "count". A direct message
is exactly {"type":"dm","from":NAME,"to":NAME,"text":TEXT}, yours included.
joined carries "room" (and "topic" when the room has one), parted "room"
(and "code", "reason" when the relay put you out), throttled "retry_ms",
error "code" and "reason" (and "room", "id", "to" for what was refused).
A failover is exactly {"type":"failover","from":ADDR,"to":ADDR}: the relay
address that stopped answering and the one chatcli switched to. /rooms prints one
{"type":"room","room":R,"count":N,"topic":T,"limit":L,"locked":true} per
room, /who {"type":"members","room":R,"names":[...]}, /topic
{"type":"topic","room":R,"topic":T}. Backlog events add "history":true. No
seq is printed twice within one room and relay run; after a relay restart
(reported on stderr) seqs start again. With the classic protocol, lines are
mapped best effort from the English wording and carry no room or seq: "X
says: T" is a chat, "X joined the chat room" a join, "X left the chat room"
and "X was removed by the administrator: R" a leave, "X timed out" a
timeout, anything else a notice whose text is the whole line.

Exit status: 0 after leaving the chat; 1 if the relay does not answer, refuses
the login (script mode), is unreachable, or ends the session itself; 2 for a
usage error.

Flags:
`

// Protocols for --proto.
const (
	protoAuto    = "auto"    // v2, falling back to classic when hellos go unanswered
	protoV2      = "v2"      // the extended protocol only
	protoClassic = "classic" // the classic text protocol only
)

// options holds the parsed command line.
type options struct {
	Name  string // --name: the chat name; empty means ask (terminal) or read the first line (script)
	Addr  string // the relays' HOST:PORT[,HOST:PORT...], as given (see addrs); defaultAddr when not given
	Proto string // --proto: protoAuto, protoV2 or protoClassic
	JSON  bool   // --json: script mode prints one JSON object per event
	Lang  string // --lang: en or zh, how v2 room events are worded
	Room  string // --room: a room to join after login, and start in; "" for main
}

// localeLang is "zh" when the locale is Chinese, else "en".
func localeLang() string {
	for _, v := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if l := os.Getenv(v); l != "" {
			if strings.HasPrefix(strings.ToLower(l), "zh") {
				return "zh"
			}
			return "en"
		}
	}
	return "en"
}

// parseFlags fills options from args through fs, which the caller owns, so
// tests can parse without touching the process's flags.
func parseFlags(fs *flag.FlagSet, args []string) (options, error) {
	o := options{Addr: defaultAddr}
	fs.StringVar(&o.Name, "name", "", "chat name (asked for, or read from the first input line, when not given)")
	fs.StringVar(&o.Proto, "proto", protoAuto, "protocol: auto (v2, or classic if the relay does not answer v2), v2 or classic")
	fs.BoolVar(&o.JSON, "json", false, "script mode: print one JSON object per event (see above)")
	fs.StringVar(&o.Lang, "lang", localeLang(), "wording of v2 room events: en or zh (default from LC_ALL, LC_MESSAGES or LANG); classic relays word their own")
	fs.StringVar(&o.Room, "room", "", "v2: join this room after login and start there (default: main)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.Room != "" && o.Room != wire.RoomMain {
		if _, _, err := wire.CanonicalRoom(o.Room); err != nil {
			return o, usageError{fmt.Sprintf("bad --room %q: a room name is 1 to %d characters, no spaces, not starting with @", o.Room, wire.MaxRoomRunes)}
		}
	}
	if o.Room == wire.RoomMain {
		o.Room = ""
	}
	if o.Lang != "en" && o.Lang != "zh" {
		return o, usageError{fmt.Sprintf("bad --lang %q: want en or zh", o.Lang)}
	}
	switch o.Proto {
	case protoAuto, protoV2, protoClassic:
	default:
		return o, usageError{fmt.Sprintf("bad --proto %q: want auto, v2 or classic", o.Proto)}
	}
	switch fs.NArg() {
	case 0:
	case 1:
		o.Addr = fs.Arg(0)
	default:
		return o, usageError{fmt.Sprintf("too many arguments: %q", fs.Args())}
	}
	for _, a := range strings.Split(o.Addr, ",") {
		if _, port, err := net.SplitHostPort(a); err != nil || a == "" {
			return o, usageError{fmt.Sprintf("bad relay address %q: want HOST:PORT[,HOST:PORT...]", a)}
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return o, usageError{fmt.Sprintf("bad relay address %q: port must be 1-65535", a)}
		}
	}
	return o, nil
}

// addrs is the relay addresses of o.Addr, in the order given.
func (o options) addrs() []string { return strings.Split(o.Addr, ",") }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program behind main: it parses args, logs in and chats
// until the user leaves, input ends, ctx is cancelled (leave cleanly) or the
// relay ends the session. It returns the exit status. Every goroutine it
// starts has ended when it returns, except that a script-mode stdin which
// can be neither cancelled (an *os.File pipe or terminal can) nor closed
// (an io.Closer is closed when run stops reading early) keeps one blocked
// reader until its Read returns.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chatcli", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	o, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "chatcli: %v\n", err)
			fs.Usage()
		}
		return 2
	}
	tui := isTerminal(stdin) && isTerminal(stdout)
	if o.Name != "" && !tui {
		// The terminal asks again instead; a script has nobody to ask.
		if why := checkName(o.Name); why != "" {
			fmt.Fprintf(stderr, "chatcli: login refused: %s\n", why)
			return 1
		}
	}

	if o.Proto != protoClassic {
		if tui {
			return runTUIv2(ctx, o, stdin, stdout, stderr)
		}
		return runScriptV2(ctx, o, stdin, stdout, stderr)
	}
	s, err := dial(o.addrs())
	if err != nil {
		fmt.Fprintf(stderr, "chatcli: %v\n", err)
		return 1
	}
	defer s.close()

	if tui {
		return runTUI(ctx, o, s, stdin, stdout, stderr)
	}
	return runScript(ctx, o, s, stdin, stdout, stderr)
}

// usageError is a command-line error found after flag parsing; errors from
// fs.Parse itself have already been printed by the flag package.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// isTerminal reports whether f is a terminal.
func isTerminal(f any) bool {
	fd, ok := f.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(fd.Fd())
}
