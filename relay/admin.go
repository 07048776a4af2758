package relay

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/chatrelay/chatrelay/relay/internal/adminsock"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// The admin protocol, spoken over a local Unix stream socket: one request
// per line; the answer is zero or more data lines, then a final line that is
// exactly "ok" or starts with "err ". Requests:
//
//	notice TEXT...          send TEXT to every member as an admin notice
//	who                     one line per member: NAME<TAB>ADDR<TAB>PROTO<TAB>IDLE
//	kick NAME [REASON...]   remove NAME: it gets REASON then EXIT, the others a notice
//	stats                   one "key value" line per counter
const (
	AdminOK        = "ok"
	AdminErrPrefix = "err "
	// MaxAdminLine bounds one admin request line in bytes.
	MaxAdminLine = 4096
	// adminIdle closes an admin connection that sends nothing for this long.
	adminIdle = time.Minute
)

// ParseAdmin splits one admin request line into its command and its
// arguments, checking them against the command table: the line must be
// UTF-8 and at most MaxAdminLine bytes, the command known, and the required
// arguments present. It does not run anything.
func ParseAdmin(line string) (cmd, args string, err error) {
	if len(line) > MaxAdminLine {
		return "", "", fmt.Errorf("request longer than %d bytes", MaxAdminLine)
	}
	if !utf8.ValidString(line) {
		return "", "", errors.New("request is not UTF-8")
	}
	cmd, args, _ = strings.Cut(strings.TrimLeft(line, " "), " ")
	c, ok := adminCommands[cmd]
	if !ok {
		return "", "", fmt.Errorf("unknown command %q (want notice, who, kick or stats)", wire.TruncateUTF8(cmd, 32))
	}
	if len(strings.Fields(args)) < c.minArgs {
		return "", "", fmt.Errorf("usage: %s needs an argument", cmd)
	}
	return cmd, args, nil
}

// adminCommand is one row of the admin table.
type adminCommand struct {
	run     func(s *Server, args string, w *bufio.Writer) error
	minArgs int // words required after the command
}

var adminCommands = map[string]adminCommand{
	"notice": {run: (*Server).adminNotice, minArgs: 1},
	"who":    {run: (*Server).adminWho},
	"kick":   {run: (*Server).adminKick, minArgs: 1},
	"stats":  {run: (*Server).adminStats},
}

// ServeAdmin answers admin requests on ln until ln is closed. It returns
// after every connection it accepted has been closed and its handler has
// returned. The caller makes ln (mode 0600, see cmd/relay) and closes it.
func (s *Server) ServeAdmin(ln net.Listener) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // protects conns
		conns = make(map[net.Conn]struct{})
	)
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.HandleAdmin(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

// HandleAdmin answers requests on c until c is closed, idle for adminIdle,
// or sends a line longer than MaxAdminLine.
func (s *Server) HandleAdmin(c net.Conn) {
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 512), MaxAdminLine)
	w := bufio.NewWriter(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(adminIdle))
		if !sc.Scan() {
			if errors.Is(sc.Err(), bufio.ErrTooLong) {
				fmt.Fprintf(w, "%srequest longer than %d bytes\n", AdminErrPrefix, MaxAdminLine)
				w.Flush()
			}
			return
		}
		line := strings.TrimSuffix(sc.Text(), "\r")
		if err := s.AdminRequest(line, w); err != nil {
			fmt.Fprintf(w, "%s%s\n", AdminErrPrefix, strings.TrimPrefix(err.Error(), "relay: "))
		} else {
			fmt.Fprintln(w, AdminOK)
		}
		if w.Flush() != nil {
			return
		}
	}
}

// AdminRequest runs one admin request line, writing its data lines to w.
// The caller writes the final "ok" or "err" line.
func (s *Server) AdminRequest(line string, w *bufio.Writer) error {
	name, args, err := ParseAdmin(line)
	if err != nil {
		return err
	}
	cmd := adminCommands[name]
	select {
	case <-s.ready: // orders the read of s.reg after Serve's setup
	default:
		return errors.New("relay is not serving yet")
	}
	if s.reg == nil {
		return errors.New("relay failed to start")
	}
	return cmd.run(s, args, w)
}

func (s *Server) adminNotice(text string, w *bufio.Writer) error {
	n, err := s.Notice(text)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "notice sent to %d members\n", n)
	return nil
}

func (s *Server) adminWho(_ string, w *bufio.Writer) error {
	now := s.cfg.Now()
	for _, m := range s.reg.Sorted() {
		idle := now.Sub(m.LastSeen()).Truncate(time.Second)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m.Name, m.Addr(), m.Proto, idle)
	}
	return nil
}

func (s *Server) adminKick(args string, w *bufio.Writer) error {
	name, reason, _ := strings.Cut(strings.TrimLeft(args, " "), " ")
	m, err := s.Kick(name, strings.TrimSpace(reason))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "kicked %s\n", m.Name)
	return nil
}

func (s *Server) adminStats(_ string, w *bufio.Writer) error {
	st := s.Stats()
	fmt.Fprintf(w, "members %d\n", st.Members)
	fmt.Fprintf(w, "uptime_seconds %d\n", int64(st.Uptime.Seconds()))
	fmt.Fprintf(w, "datagrams_received %d\n", st.DatagramsReceived)
	fmt.Fprintf(w, "datagrams_dropped %d\n", st.DatagramsDropped)
	fmt.Fprintf(w, "logins %d\n", st.Logins)
	fmt.Fprintf(w, "broadcasts %d\n", st.Broadcasts)
	fmt.Fprintf(w, "deliveries %d\n", st.Deliveries)
	fmt.Fprintf(w, "send_errors %d\n", st.SendErrors)
	fmt.Fprintf(w, "panics %d\n", st.Panics)
	fmt.Fprintf(w, "queued %d\n", st.Queued)
	fmt.Fprintf(w, "icmp_port_unreachable %d\n", st.ICMPErrors)
	return nil
}

// ErrAdminInUse reports that a live relay already serves the admin socket.
var ErrAdminInUse = adminsock.ErrInUse

// ListenAdmin creates the admin socket at path with mode 0600. A stale
// socket file left by a dead relay is replaced; a live relay's socket is
// never taken (ErrAdminInUse); a path that is not a socket is left alone.
// Closing the listener removes the file.
func ListenAdmin(path string) (*net.UnixListener, error) { return adminsock.Listen(path) }
