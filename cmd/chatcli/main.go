// Command chatcli is a chat client for a relay speaking the classic chatrelay
// UDP protocol (`L name`, `C name text`, `Q name`).
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
	"syscall"

	"github.com/charmbracelet/x/term"
)

// defaultAddr is the relay address used when none is given.
const defaultAddr = "127.0.0.1:9999"

const usageText = `Usage: chatcli [--name NAME] [HOST:PORT]

Chat through a chatrelay relay (classic UDP protocol) at HOST:PORT
(default ` + defaultAddr + `).

Terminal mode (stdin and stdout are terminals): a full-screen chat. Without
--name it asks for a name; a refused name shows the relay's reason and asks
again. Enter sends the line. PgUp/PgDn and Up/Down scroll the messages.
"quit", "/quit", Ctrl-D on an empty line or Ctrl-C leave the chat.

Script mode (otherwise): each input line is sent as one chat message and each
received message is printed as one line. Without --name the first input line
is the name; if the relay refuses it, the reason goes to stderr and the next
line is tried as the name. With --name a refused name prints the reason to
stderr and exits 1, since there is nobody to ask. A "quit" or "/quit" line,
or the end of input, leaves the chat. Lines longer than one datagram are sent
as several messages.

Exit status: 0 after leaving the chat; 1 if the relay does not answer, refuses
the login (script mode), is unreachable, or ends the session itself; 2 for a
usage error.

Flags:
`

// options holds the parsed command line.
type options struct {
	Name string // --name: the chat name; empty means ask (terminal) or read the first line (script)
	Addr string // the relay's HOST:PORT; defaultAddr when not given
}

// parseFlags fills options from args through fs, which the caller owns, so
// tests can parse without touching the process's flags.
func parseFlags(fs *flag.FlagSet, args []string) (options, error) {
	o := options{Addr: defaultAddr}
	fs.StringVar(&o.Name, "name", "", "chat name (asked for, or read from the first input line, when not given)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch fs.NArg() {
	case 0:
	case 1:
		o.Addr = fs.Arg(0)
	default:
		return o, usageError{fmt.Sprintf("too many arguments: %q", fs.Args())}
	}
	if _, port, err := net.SplitHostPort(o.Addr); err != nil {
		return o, usageError{fmt.Sprintf("bad relay address %q: want HOST:PORT", o.Addr)}
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return o, usageError{fmt.Sprintf("bad relay address %q: port must be 1-65535", o.Addr)}
	}
	return o, nil
}

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

	s, err := dial(o.Addr)
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
