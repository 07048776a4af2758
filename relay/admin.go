package relay

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/chatrelay/chatrelay/relay/internal/adminsock"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// The admin protocol, spoken over a local Unix stream socket: one request
// per line; the answer is zero or more data lines, then a final line that is
// exactly "ok" or starts with "err ". A request is a command, its
// positional words, its flags (--for DURATION, --room ROOM, --json) and,
// for some, free text; "--" starts a text that itself starts with "--".
// Requests (adminCommands):
//
//	notice [--room ROOM] TEXT...                  send TEXT as an admin notice to main (everyone starts there) or ROOM
//	who [--room ROOM] [--json]                    one line per member: NAME<TAB>ADDR<TAB>PROTO<TAB>IDLE
//	kick NAME [--room ROOM] [REASON...]           remove NAME from the relay (it gets REASON then EXIT) or from ROOM only
//	rooms [--json]                                one line per room: NAME<TAB>MEMBERS<TAB>FLAGS<TAB>TOPIC
//	topic ROOM TEXT...                            set ROOM's topic (creating and keeping the room), announced in it
//	stats [--json]                                one "key value" line per counter
//	ban NAME|IP|CIDR [--for DURATION] [REASON...] refuse the name, or any name from the addresses; removes who is online
//	unban NAME|IP|CIDR                            lift that ban
//	bans [--json]                                 TARGET<TAB>KIND<TAB>LEFT<TAB>BY<TAB>SINCE<TAB>REASON
//	mute NAME [--room ROOM] [--for DURATION]      refuse NAME's chats, relay-wide or in ROOM
//	unmute NAME [--room ROOM]                     lift that mute
//	mutes [--json]                                NAME<TAB>ROOM<TAB>LEFT<TAB>BY<TAB>SINCE (ROOM * is relay-wide)
//	lockdown [on|off]                             refuse new logins except from --limit-exempt; alone: the state
//
// A listing's --json answers one data line: a JSON array of objects (stats:
// one object).
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
		return "", "", fmt.Errorf("unknown command %q (want %s)", wire.TruncateUTF8(cmd, 32), adminCommandNames())
	}
	if len(strings.Fields(args)) < c.minArgs {
		return "", "", fmt.Errorf("usage: %s needs an argument", cmd)
	}
	return cmd, args, nil
}

// adminCommandNames lists the commands, for an error.
func adminCommandNames() string {
	names := make([]string, 0, len(adminCommands))
	for n := range adminCommands {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// adminCommand is one row of the admin table. Its fields say how the
// arguments are read (adminCommand.parse); run gets them parsed.
type adminCommand struct {
	run     func(s *Server, r *adminReq) error
	minArgs int      // words required after the command
	args    int      // positional words before the free text (NAME, ROOM, on|off)
	text    bool     // free text may follow them (a notice, a reason)
	flags   []string // flags that take a value ("for": --for DURATION)
	list    bool     // a listing: --json answers it as one JSON value (writeList)
}

var adminCommands = map[string]adminCommand{
	"notice":   {run: (*Server).adminNotice, minArgs: 1, text: true, flags: []string{"room"}},
	"who":      {run: (*Server).adminWho, list: true, flags: []string{"room"}},
	"kick":     {run: (*Server).adminKick, minArgs: 1, args: 1, text: true, flags: []string{"room"}},
	"rooms":    {run: (*Server).adminRooms, list: true},
	"topic":    {run: (*Server).adminTopic, minArgs: 2, args: 1, text: true},
	"stats":    {run: (*Server).adminStats, list: true},
	"ban":      {run: (*Server).adminBan, minArgs: 1, args: 1, text: true, flags: []string{"for"}},
	"unban":    {run: (*Server).adminUnban, minArgs: 1, args: 1},
	"bans":     {run: (*Server).adminBans, list: true},
	"mute":     {run: (*Server).adminMute, minArgs: 1, args: 1, flags: []string{"room", "for"}},
	"unmute":   {run: (*Server).adminUnmute, minArgs: 1, args: 1, flags: []string{"room"}},
	"mutes":    {run: (*Server).adminMutes, list: true},
	"lockdown": {run: (*Server).adminLockdown, args: 1},
}

// adminReq is one admin request, parsed for its command's run.
type adminReq struct {
	cmd   string
	args  []string          // the positional words
	flags map[string]string // the value flags given, by name without "--"
	text  string            // the free text, inner spaces kept
	json  bool              // --json on a listing
	by    string            // who asks: the admin socket's peer
	w     *bufio.Writer     // the answer's data lines
}

// parse reads args as c says: positional words, flags anywhere before the
// free text, then the text. A word that looks like a flag (--name) and is
// not one of c's is an error, so a mistyped --for never becomes a reason.
func (c *adminCommand) parse(cmd, args string) (*adminReq, error) {
	r := &adminReq{cmd: cmd, flags: map[string]string{}}
	rest := args
	for {
		rest = strings.TrimLeft(rest, " ")
		if rest == "" {
			break
		}
		word, after, _ := strings.Cut(rest, " ")
		if word == "--" && c.text {
			r.text = strings.TrimSpace(after)
			break
		}
		if name, ok := flagName(word); ok {
			switch {
			case name == "json" && c.list:
				r.json = true
			case slices.Contains(c.flags, name):
				v, after2, _ := strings.Cut(strings.TrimLeft(after, " "), " ")
				if v == "" {
					return nil, fmt.Errorf("usage: %s --%s needs a value", cmd, name)
				}
				if _, dup := r.flags[name]; dup {
					return nil, fmt.Errorf("usage: %s --%s given twice", cmd, name)
				}
				r.flags[name], after = v, after2
			default:
				return nil, fmt.Errorf("usage: %s has no flag %s", cmd, word)
			}
			rest = after
			continue
		}
		if len(r.args) < c.args {
			r.args = append(r.args, word)
			rest = after
			continue
		}
		if !c.text {
			return nil, fmt.Errorf("usage: %s: unexpected %q", cmd, wire.TruncateUTF8(word, 32))
		}
		r.text = strings.TrimSpace(rest)
		break
	}
	if len(r.args) < min(c.minArgs, c.args) || (c.minArgs > c.args && r.text == "") {
		return nil, fmt.Errorf("usage: %s needs an argument", cmd)
	}
	return r, nil
}

// flagName returns the name of a word that looks like a flag: "--" and a
// letter, then letters, digits and dashes ("---" and "--!" are text).
func flagName(word string) (string, bool) {
	name, ok := strings.CutPrefix(word, "--")
	if !ok || name == "" || name[0] < 'a' || name[0] > 'z' {
		return "", false
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return "", false
		}
	}
	return name, true
}

// writeList answers a listing: with --json one line, the JSON of rows (an
// empty listing is []), else one line(row) per row. A listing supports
// --json with list: true in its table row and one call of writeList.
func writeList[S ~[]R, R any](r *adminReq, rows S, line func(R) string) error {
	if r.json {
		if rows == nil {
			rows = S{}
		}
		enc := json.NewEncoder(r.w)
		enc.SetEscapeHTML(false)
		return enc.Encode(rows) // one line, newline included
	}
	for _, x := range rows {
		r.w.WriteString(line(x))
		r.w.WriteByte('\n')
	}
	return nil
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
	by := adminPeer(c)
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
		if err := s.adminRequest(line, w, by); err != nil {
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
	return s.adminRequest(line, w, "admin")
}

// adminRequest is AdminRequest from by, who is recorded with a ban, a
// mute or a lockdown.
func (s *Server) adminRequest(line string, w *bufio.Writer, by string) error {
	name, args, err := ParseAdmin(line)
	if err != nil {
		return err
	}
	cmd := adminCommands[name]
	req, err := cmd.parse(name, args)
	if err != nil {
		return err
	}
	select {
	case <-s.ready: // orders the read of s.reg after Serve's setup
	default:
		return errors.New("relay is not serving yet")
	}
	if s.reg == nil {
		return errors.New("relay failed to start")
	}
	req.by, req.w = by, w
	return cmd.run(s, req)
}

func (s *Server) adminNotice(r *adminReq) error {
	room, ok := r.flags["room"]
	if !ok {
		room = wire.RoomMain
	}
	n, err := s.NoticeRoom(room, r.text)
	if err != nil {
		return err
	}
	s.obs.Moderation(ModNotice)
	if ok {
		fmt.Fprintf(r.w, "notice sent to %d members of %s\n", n, room)
		return nil
	}
	fmt.Fprintf(r.w, "notice sent to %d members\n", n)
	return nil
}

// whoRow is one member in `who`.
type whoRow struct {
	Name        string        `json:"name"`
	Addr        string        `json:"addr"`
	Proto       string        `json:"proto"`
	IdleSeconds float64       `json:"idle_seconds"`
	idle        time.Duration // whole seconds
}

func (s *Server) adminWho(r *adminReq) error {
	now := s.cfg.Now()
	var rows []whoRow
	members := s.reg.Sorted()
	if name, ok := r.flags["room"]; ok {
		room := s.roomNamed(name)
		if room == nil {
			return ErrNoRoom
		}
		members = room.Sorted()
	}
	for _, m := range members {
		idle := now.Sub(m.LastSeen()).Truncate(time.Second)
		rows = append(rows, whoRow{Name: m.Name, Addr: m.Addr().String(), Proto: m.Proto, IdleSeconds: idle.Seconds(), idle: idle})
	}
	return writeList(r, rows, func(w whoRow) string {
		return fmt.Sprintf("%s\t%s\t%s\t%s", w.Name, w.Addr, w.Proto, w.idle)
	})
}

func (s *Server) adminKick(r *adminReq) error {
	if room, ok := r.flags["room"]; ok {
		m, err := s.KickFromRoom(r.args[0], room, r.text)
		if err != nil {
			return err
		}
		s.obs.Moderation(ModKick)
		fmt.Fprintf(r.w, "kicked %s from %s\n", m.Name, room)
		return nil
	}
	m, err := s.Kick(r.args[0], r.text)
	if err != nil {
		return err
	}
	s.obs.Moderation(ModKick)
	fmt.Fprintf(r.w, "kicked %s\n", m.Name)
	return nil
}

// adminRooms lists the rooms: NAME, MEMBERS, FLAGS (configured, locked,
// limit=N, or -), TOPIC.
func (s *Server) adminRooms(r *adminReq) error {
	return writeList(r, s.Rooms(), func(ri RoomInfo) string {
		var flags []string
		if ri.Configured {
			flags = append(flags, "configured")
		}
		if ri.Locked {
			flags = append(flags, "locked")
		}
		if ri.Limit > 0 {
			flags = append(flags, "limit="+strconv.Itoa(ri.Limit))
		}
		if len(flags) == 0 {
			flags = []string{"-"}
		}
		return fmt.Sprintf("%s\t%d\t%s\t%s", ri.Name, ri.Members, strings.Join(flags, ","), ri.Topic)
	})
}

func (s *Server) adminTopic(r *adminReq) error {
	if err := s.SetTopic(r.args[0], r.text); err != nil {
		return err
	}
	s.obs.Moderation(ModTopic)
	fmt.Fprintf(r.w, "topic of %s set\n", r.args[0])
	return nil
}

// stat is one counter in `stats`; a list of them is one JSON object, in
// order.
type stat struct {
	key string
	val int64
}

type statList []stat

func (l statList) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, st := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, st.key)
		b = append(b, ':')
		b = strconv.AppendInt(b, st.val, 10)
	}
	return append(b, '}'), nil
}

func (s *Server) adminStats(r *adminReq) error {
	st := s.Stats()
	return writeList(r, statList{
		{"members", int64(st.Members)},
		{"uptime_seconds", int64(st.Uptime.Seconds())},
		{"datagrams_received", int64(st.DatagramsReceived)},
		{"datagrams_dropped", int64(st.DatagramsDropped)},
		{"logins", int64(st.Logins)},
		{"broadcasts", int64(st.Broadcasts)},
		{"deliveries", int64(st.Deliveries)},
		{"send_errors", int64(st.SendErrors)},
		{"panics", int64(st.Panics)},
		{"queued", st.Queued},
		{"icmp_port_unreachable", int64(st.ICMPErrors)},
	}, func(st stat) string { return st.key + " " + strconv.FormatInt(st.val, 10) })
}

// ErrAdminInUse reports that a live relay already serves the admin socket.
var ErrAdminInUse = adminsock.ErrInUse

// ListenAdmin creates the admin socket at path with mode 0600. A stale
// socket file left by a dead relay is replaced; a live relay's socket is
// never taken (ErrAdminInUse); a path that is not a socket is left alone.
// Closing the listener removes the file.
func ListenAdmin(path string) (*net.UnixListener, error) { return adminsock.Listen(path) }
