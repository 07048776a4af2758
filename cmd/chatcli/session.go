package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// Timing of the two request/reply exchanges. UDP drops datagrams, so both
// retransmit; neither waits longer than tries*interval.
const (
	loginInterval = 500 * time.Millisecond // wait for an L reply before resending
	loginTries    = 6                      // L sends before giving up: about 3 s
	quitInterval  = 500 * time.Millisecond // wait for EXIT before resending Q
	quitTries     = 2                      // Q sends: one retransmit, 1 s in all
	staleOKWindow = 5 * time.Second        // how long duplicate OKs to retransmitted logins are swallowed
)

// Session errors: each ends the program with exit status 1.
var (
	// errNoReply: the relay never answered a login.
	errNoReply = errors.New("no reply from relay")
	// errUnreachable: the kernel reported ECONNREFUSED (ICMP port unreachable).
	errUnreachable = errors.New("relay unreachable")
	// errEnded: the relay sent EXIT when we had not asked to leave.
	errEnded = errors.New("relay ended the session")
)

// packet is one received datagram, or a read error, from the read loop.
type packet struct {
	data string
	err  error
}

// session is one connected UDP socket to a relay plus the goroutine that
// reads it. Received datagrams arrive on in; exactly one goroutine consumes
// in at a time (script mode: run's; terminal mode: the controller's). With
// several relay addresses, logins try them in order until one answers;
// the session then stays with that relay (classic has no failover).
type session struct {
	addrs  []*net.UDPAddr // the relays, resolved, in the order given
	names  []string       // the relay addresses as the user gave them, for messages
	cur    int            // the relay the socket is connected to
	addr   string         // names[cur]
	stayed bool           // a relay answered a login: logins stay with it

	conn    *net.UDPConn
	in      chan packet
	done    chan struct{} // closed by close: the read loop stops delivering
	connEnd chan struct{} // closed when conn is replaced: its read loop stops delivering
	wg      sync.WaitGroup

	// Owned by the goroutine consuming in.
	name    string    // the logged-in name; empty before login
	staleOK int       // duplicate OK replies still expected after a retransmitted login
	okUntil time.Time // staleOK expires then
}

// dial resolves addrs and opens a connected UDP socket to the first, so
// that an ICMP port unreachable surfaces as ECONNREFUSED on the next read
// or write.
func dial(addrs []string) (*session, error) {
	s := &session{
		names: addrs,
		in:    make(chan packet, 64),
		done:  make(chan struct{}),
	}
	for _, addr := range addrs {
		raddr, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return nil, fmt.Errorf("bad relay address %s: %v", addr, err)
		}
		s.addrs = append(s.addrs, raddr)
	}
	if err := s.connect(0); err != nil {
		return nil, err
	}
	return s, nil
}

// connect connects the session to relay i: it closes the socket in use, if
// any, and waits for its read loop, then opens a new one and its loop.
// Datagrams of the old socket still in s.in are left for drain.
func (s *session) connect(i int) error {
	if s.conn != nil {
		close(s.connEnd)
		s.conn.Close()
		s.wg.Wait()
		s.conn = nil
	}
	conn, err := net.DialUDP("udp", nil, s.addrs[i])
	if err != nil {
		return fmt.Errorf("cannot reach relay at %s: %v", s.names[i], err)
	}
	s.conn, s.cur, s.addr = conn, i, s.names[i]
	s.connEnd = make(chan struct{})
	s.wg.Add(1)
	go s.readLoop(conn, s.connEnd)
	return nil
}

// close closes the socket and waits for the read loop to end.
func (s *session) close() {
	close(s.done)
	if s.conn != nil {
		s.conn.Close()
	}
	s.wg.Wait()
}

// readLoop delivers every datagram of conn (at most wire.MaxClassicReply
// bytes) and every ECONNREFUSED to in, until conn is closed or end or
// s.done is.
func (s *session) readLoop(conn *net.UDPConn, end <-chan struct{}) {
	defer s.wg.Done()
	buf := make([]byte, wire.MaxClassicReply)
	for {
		n, err := conn.Read(buf)
		var p packet
		switch {
		case err == nil:
			p.data = string(buf[:n])
		case errors.Is(err, net.ErrClosed):
			return
		case errors.Is(err, syscall.ECONNREFUSED):
			p.err = errUnreachable
		default:
			p.err = err
		}
		select {
		case s.in <- p:
		case <-s.done:
			return
		case <-end:
			return
		}
		if p.err != nil && p.err != errUnreachable {
			return
		}
	}
}

// send writes one datagram; ECONNREFUSED becomes errUnreachable.
func (s *session) send(b []byte) error {
	_, err := s.conn.Write(b)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return errUnreachable
	}
	return err
}

// drain discards datagrams already received, so that a late reply to an
// earlier login attempt is not taken for the reply to the next one.
func (s *session) drain() {
	for {
		select {
		case <-s.in:
		default:
			return
		}
	}
}

// login logs in as name at the relay in use and, until one has answered
// a login, at the next addresses in turn while they do not answer
// (errNoReply or errUnreachable). It returns ("", nil) for OK, (reason,
// nil) for a refusal, or errNoReply (some relay was silent),
// errUnreachable (nothing listens at any), errEnded or ctx's error.
func (s *session) login(ctx context.Context, name string) (reason string, err error) {
	silent := false
	for {
		reason, err = s.loginAt(ctx, name)
		if errors.Is(err, errNoReply) {
			silent = true
		}
		if s.stayed || s.cur+1 == len(s.addrs) || !(errors.Is(err, errNoReply) || errors.Is(err, errUnreachable)) {
			break
		}
		if cerr := s.connect(s.cur + 1); cerr != nil {
			return "", cerr
		}
	}
	switch {
	case err == nil:
		s.stayed = true
	case errors.Is(err, errUnreachable) && silent:
		err = errNoReply
	}
	return reason, err
}

// loginAt sends `L name` up to loginTries times, loginInterval apart, until
// a reply arrives. It returns ("", nil) for OK, (reason, nil) for a
// refusal, or errNoReply, errUnreachable, errEnded or ctx's error.
func (s *session) loginAt(ctx context.Context, name string) (reason string, err error) {
	s.drain()
	req := wire.AppendLogin(nil, name)
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for sent := 1; ; sent++ {
		if err := s.send(req); err != nil {
			return "", err
		}
		t.Reset(loginInterval)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case p := <-s.in:
			if p.err != nil {
				return "", p.err
			}
			switch reply := string(wire.StripNewline([]byte(p.data))); reply {
			case wire.ReplyOK:
				s.name = name
				// Each earlier send may still draw its own OK.
				s.staleOK, s.okUntil = sent-1, time.Now().Add(staleOKWindow)
				return "", nil
			case wire.ReplyExit:
				return "", errEnded
			case "":
				return "(empty reply)", nil
			default:
				return cleanLine(wire.TruncateUTF8(reply, 4*wire.MaxReasonBytes)), nil
			}
		case <-t.C:
			if sent >= loginTries {
				return "", errNoReply
			}
			// resend
		}
	}
}

// recvKind classifies a datagram received after login.
type recvKind int

const (
	recvLine  recvKind = iota // show it
	recvSkip                  // a duplicate OK to a retransmitted login
	recvExit                  // the relay ended the session
	recvError                 // p.err is set
)

// classify decides what a datagram received while logged in means, and
// returns the displayable line for recvLine.
func (s *session) classify(p packet) (recvKind, string) {
	if p.err != nil {
		return recvError, ""
	}
	b := wire.StripNewline([]byte(p.data))
	switch string(b) {
	case wire.ReplyExit:
		return recvExit, ""
	case wire.ReplyOK:
		if s.staleOK > 0 && time.Now().Before(s.okUntil) {
			s.staleOK--
			return recvSkip, ""
		}
	}
	return recvLine, cleanLine(string(b))
}

// chat sends text as one or more `C name text` datagrams, each within
// wire.DefaultMaxDatagram bytes, split at UTF-8 boundaries.
func (s *session) chat(text string) error {
	var buf []byte
	for _, part := range splitText(text, maxChatText(s.name)) {
		buf = wire.AppendChat(buf[:0], s.name, part)
		if err := s.send(buf); err != nil {
			return err
		}
	}
	return nil
}

// quit sends `Q name` and waits up to quitTries*quitInterval for EXIT,
// resending once. Datagrams that arrive meanwhile go to show (if not nil).
// It reports whether EXIT arrived; the caller exits either way.
func (s *session) quit(show func(string)) bool {
	req := wire.AppendQuit(nil, s.name)
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for sent := 1; ; sent++ {
		if s.send(req) != nil {
			return false
		}
		t.Reset(quitInterval)
		for waiting := true; waiting; {
			select {
			case p := <-s.in:
				switch kind, line := s.classify(p); kind {
				case recvExit:
					return true
				case recvError:
					return false
				case recvLine:
					if show != nil {
						show(line)
					}
				}
			case <-t.C:
				if sent >= quitTries {
					return false
				}
				waiting = false
			}
		}
	}
}

// describe turns a session error into the one line printed before exit 1.
// Before a relay answered a login it names every address.
func (s *session) describe(err error) string {
	at := s.addr
	if !s.stayed {
		at = strings.Join(s.names, ",")
	}
	switch {
	case errors.Is(err, errNoReply):
		return fmt.Sprintf("chatcli: no reply from relay at %s (is it running?)", at)
	case errors.Is(err, errUnreachable):
		return fmt.Sprintf("chatcli: relay at %s is unreachable: connection refused (is it running?)", at)
	case errors.Is(err, errEnded):
		return fmt.Sprintf("chatcli: the relay at %s ended the session", at)
	default:
		return fmt.Sprintf("chatcli: relay at %s: %v", at, err)
	}
}

// maxChatText is how many bytes of text fit in one chat datagram for name,
// given the relay's default input bound. It never returns less than
// utf8.UTFMax, so that every split makes progress.
func maxChatText(name string) int {
	return max(wire.DefaultMaxDatagram-len("C  ")-len(name), utf8.UTFMax)
}

// splitText cuts text into pieces of at most max bytes, never inside a UTF-8
// sequence. max must be at least utf8.UTFMax.
func splitText(text string, max int) []string {
	var parts []string
	for len(text) > max {
		part := wire.TruncateUTF8(text, max)
		parts = append(parts, part)
		text = text[len(part):]
	}
	return append(parts, text)
}

// checkName rejects, before asking the relay, names the classic protocol
// cannot carry: empty ones and ones with spaces or control characters
// (the protocol splits fields on spaces). It returns the reason, or "".
func checkName(name string) string {
	switch {
	case name == "":
		return "empty name"
	case !utf8.ValidString(name):
		return "name is not valid UTF-8"
	case strings.IndexFunc(name, unicode.IsSpace) >= 0:
		return "name must not contain spaces"
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "name must not contain control characters"
	}
	return ""
}

// isQuit reports whether an input line is a request to leave.
func isQuit(line string) bool {
	switch strings.TrimSpace(line) {
	case "quit", "/quit":
		return true
	}
	return false
}

// cleanText prepares user input for the wire: invalid UTF-8 becomes U+FFFD,
// a tab becomes a space and other control characters are dropped (relays
// drop chat text that carries them, which would lose the whole line).
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return ' '
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s)
}

// cleanLine makes a received datagram safe to show as one terminal line:
// invalid UTF-8 and control characters (escape sequences included) become
// U+FFFD, tabs and line breaks become spaces, and bidi overrides and
// isolates are dropped so a line cannot reorder the lines after it.
func cleanLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case unicode.IsControl(r):
			return '\uFFFD'
		case r >= '\u202A' && r <= '\u202E', r >= '\u2066' && r <= '\u2069':
			return -1
		}
		return r
	}, s)
}
