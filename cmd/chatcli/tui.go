package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"charm.land/bubbles/v2/textinput"
	"charm.land/bubbles/v2/viewport"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// maxHistory bounds the lines kept for scrolling back. The viewport measures
// every line on each update, so this also bounds the cost of a message.
const maxHistory = 2000

// maxBatch bounds the received lines handed to the model in one message;
// under a flood, batching keeps the viewport from being rebuilt per line.
const maxBatch = 256

// The terminal mode is three pieces:
//
//   - model, the bubbletea model: the message viewport, a status line and the
//     line editor. It never touches the network; it pushes requests onto a
//     requestQueue and learns the results from messages. It is here, and
//     how its lines are drawn is in render.go.
//   - controller, one goroutine that owns the session: it performs logins,
//     chats and the quit handshake (which block on replies) and turns received
//     datagrams into messages for the program (Program.Send). The classic one
//     is in tui_classic.go, the v2 one (controllerV2) in tui_v2.go.
//   - runTUI, which wires them up, runs the program and waits for both
//     (through runProgram, below).

// runProgram runs the terminal UI until it ends, while the loop that
// newLoop makes (a controller: the network side) serves its requests; the
// loop stops when stop is closed, after the program ended. It returns the
// final model.
func runProgram(ctx context.Context, o options, addr string, stdin io.Reader, stdout io.Writer,
	newLoop func(send func(tea.Msg), reqs *requestQueue, stop chan struct{}) func(ctx, loginCtx context.Context)) (model, error) {
	reqs := newRequestQueue()
	m := newModel(o, addr, reqs)
	p := tea.NewProgram(m,
		tea.WithInput(stdin),
		tea.WithOutput(stdout),
		tea.WithoutSignalHandler(), // ctx carries SIGINT/SIGTERM/SIGHUP: leave cleanly
	)
	if m.state == stateLoggingIn {
		reqs.push(request{kind: reqLogin, text: o.Name})
	}
	loginCtx, cancelLogin := context.WithCancel(ctx)
	stop := make(chan struct{})
	loop := newLoop(p.Send, reqs, stop)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		loop(ctx, loginCtx)
	}()
	final, err := p.Run()
	cancelLogin()
	close(stop)
	wg.Wait()
	fm, _ := final.(model)
	return fm, err
}

// requestKind is what the model asks the controller to do.
type requestKind int

const (
	reqLogin requestKind = iota // log in as text
	reqChat                     // send text as chat (v2: to room)
	reqQuit                     // leave: Q, wait for EXIT, then leftMsg
	reqWho                      // v2: ask who is in room, then whoMsg
	reqJoin                     // v2: join room with key
	reqPart                     // v2: leave room
	reqMsg                      // v2: send text to the member to
	reqRooms                    // v2: list the rooms, then roomsMsg

	reqHistory // v2: fetch room's page of events before before, then historyMsg (history.go)
)

type request struct {
	kind requestKind
	text string
	room string // chat, who, join, part: the room ("" is main)
	to   string // msg: the recipient
	key  string // join: the room's key

	before uint64 // history: the page ends before this seq (0: the newest)
}

// requestQueue is an unbounded FIFO, so that Update never blocks on the
// controller (which may itself be blocked in Program.Send).
type requestQueue struct {
	ready chan struct{} // holds a token while q may be non-empty

	mu sync.Mutex // protects q
	q  []request
}

func newRequestQueue() *requestQueue {
	return &requestQueue{ready: make(chan struct{}, 1)}
}

func (rq *requestQueue) push(r request) {
	rq.mu.Lock()
	rq.q = append(rq.q, r)
	rq.mu.Unlock()
	select {
	case rq.ready <- struct{}{}:
	default:
	}
}

// pushFront puts r back at the head of the queue.
func (rq *requestQueue) pushFront(r request) {
	rq.mu.Lock()
	rq.q = append([]request{r}, rq.q...)
	rq.mu.Unlock()
	select {
	case rq.ready <- struct{}{}:
	default:
	}
}

func (rq *requestQueue) pop() (request, bool) {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	if len(rq.q) == 0 {
		return request{}, false
	}
	r := rq.q[0]
	rq.q = rq.q[1:]
	return r, true
}

// Messages from the controller to the model.
type (
	loginMsg struct { // the answer to reqLogin
		name   string
		reason string // refusal reason; "" with err == nil means logged in
		err    error
		proto  string // protoV2 when logged in with v2; classic otherwise
		rev    uint64 // v2: the revision the relay speaks (1: rooms and direct messages)
		addr   string // the relay that answered, when known
	}
	linesMsg []string            // received lines, cleaned
	endedMsg struct{}            // the relay sent EXIT unprompted
	fatalMsg struct{ err error } // the session is unusable
	leftMsg  struct{}            // the quit handshake is over
)

// modelState is where the model is in the session's life.
type modelState int

const (
	stateAskName   modelState = iota // editing a name
	stateLoggingIn                   // waiting for the login reply
	stateChat                        // logged in: editing chat lines
	stateLeaving                     // waiting for the quit handshake
)

// model is the bubbletea model. It is a value; Update returns the new one.
type model struct {
	state modelState
	name  string // the name logged in as, or being tried
	addr  string // the relay (before login: every address given), for the status line
	reqs  *requestQueue

	input   textinput.Model // the line editor; rendered by inputLine, not its View
	inOff   int             // first rune of the value shown on the input line
	vp      viewport.Model
	lines   []string // history shown in vp (the current view's), at most maxHistory
	unread  int      // lines received while scrolled up
	views   []*view  // main, the rooms joined and the DMs (tui_views.go)
	cur     int      // the view shown
	rev     uint64   // v2: the relay's revision; 1 has rooms and direct messages
	lastDM  string   // whom the DMs view answers
	names   map[string]bool
	hist    []string // lines entered, for Up and Down
	histPos int      // the line recalled; len(hist) when none
	draft   string   // what was typed before recalling
	hint    string   // shown in the status line until the next key
	now     func() time.Time
	width   int
	height  int
	notice  string // shown in the status line in place of the usual text
	quitHit bool   // Ctrl-C pressed once while busy: the next one forces exit
	v2      bool   // logged in with v2: own lines come back as echoes; /who works
	conn    string // v2 connection trouble for the status line ("" when fine)
	endErr  error  // v2: why the session ended, when not a kick
	lang    string // wording of v2 room events

	lastLine string // the last received line, reported after an unprompted EXIT
	err      error  // why the program ended, nil when the user left
}

func newModel(o options, addr string, reqs *requestQueue) model {
	in := textinput.New()
	// A real terminal cursor (placed by inputLine), so that input methods
	// put their composition window where the text goes.
	in.SetVirtualCursor(false)
	in.Prompt = ""
	in.Focus()
	vp := viewport.New()
	vp.SoftWrap = true
	vp.KeyMap = viewport.KeyMap{} // keys are routed explicitly in Update
	m := model{state: stateAskName, addr: addr, reqs: reqs, input: in, vp: vp, lang: o.Lang,
		views: []*view{{name: wire.RoomMain}}, names: make(map[string]bool), now: time.Now}
	if o.Name != "" {
		if why := checkName(o.Name); why != "" {
			m.note(fmt.Sprintf("%q: %s; choose another name", o.Name, why))
		} else {
			m.state, m.name = stateLoggingIn, o.Name
		}
	}
	return m
}

func (m model) Init() tea.Cmd { return nil }

func (m model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.vp.SetWidth(m.width)
		m.vp.SetHeight(max(m.height-2, 0))
		m.vp.GotoBottom()
		m.unread = 0
		m.fixInputOffset()
		return m, nil

	case tea.KeyPressMsg:
		return m.key(msg)

	case tea.PasteMsg:
		return m.edit(msg)

	case loginMsg:
		return m.loginResult(msg)

	case linesMsg:
		m.lastLine = msg[len(msg)-1]
		m.addLines(msg...)
		return m, nil

	case eventsMsg:
		m.events(msg)
		return m, nil

	case whoMsg:
		m.remember(msg.names...)
		m.addLine(noteStyle.Render("* " + cleanLine(whoLine(msg))))
		return m, nil

	case historyMsg:
		m.prependHistory(msg)
		return m, nil

	case roomsMsg:
		for _, l := range roomsLines(msg) {
			m.addLine(noteStyle.Render("* " + cleanLine(l)))
		}
		return m, nil

	case noteMsg:
		m.addLine(noteStyle.Render("* " + cleanLine(string(msg))))
		return m, nil

	case endedMsg:
		m.err = errEnded
		if m.endErr != nil {
			m.err = m.endErr
		}
		return m, tea.Quit

	case fatalMsg:
		m.err = msg.err
		return m, tea.Quit

	case leftMsg:
		return m, tea.Quit
	}
	return m, nil
}

// key handles one key press.
func (m model) key(k tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	m.hint = ""
	chat := m.state == stateChat
	switch ks := k.String(); {
	case chat && ks == "ctrl+n":
		m.show((m.cur + 1) % len(m.views))
		return m, nil
	case chat && ks == "ctrl+p":
		m.show((m.cur + len(m.views) - 1) % len(m.views))
		return m, nil
	case chat && len(ks) == 5 && strings.HasPrefix(ks, "alt+") && ks[4] >= '1' && ks[4] <= '9':
		m.show(int(ks[4] - '1'))
		return m, nil
	case chat && ks == "tab":
		m.complete()
		return m, nil
	case chat && ks == "up":
		m.recall(-1)
		return m, nil
	case chat && ks == "down":
		m.recall(+1)
		return m, nil
	}
	switch k.String() {
	case "ctrl+c":
		return m.leave()
	case "ctrl+d":
		if m.input.Value() == "" {
			return m.leave()
		}
	case "enter":
		return m.submit()
	case "pgup":
		top := m.vp.AtTop()
		m.vp.PageUp()
		m.olderPastTop(top)
		return m, nil
	case "pgdown":
		m.vp.PageDown()
		m.seenIfBottom()
		return m, nil
	case "up", "shift+up":
		top := m.vp.AtTop()
		m.vp.ScrollUp(1)
		m.olderPastTop(top)
		return m, nil
	case "down", "shift+down":
		m.vp.ScrollDown(1)
		m.seenIfBottom()
		return m, nil
	case "ctrl+end":
		m.vp.GotoBottom()
		m.seenIfBottom()
		return m, nil
	}
	return m.edit(k)
}

// edit passes a key or paste to the line editor when it is accepting input.
func (m model) edit(msg tea.Msg) (tea.Model, tea.Cmd) {
	if m.state != stateAskName && m.state != stateChat {
		return m, nil
	}
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(msg)
	m.fixInputOffset()
	return m, cmd
}

// submit handles Enter.
func (m model) submit() (tea.Model, tea.Cmd) {
	value := m.input.Value()
	switch m.state {
	case stateAskName:
		name := strings.TrimSpace(value)
		if name == "" {
			return m, nil
		}
		if isQuit(name) {
			return m, tea.Quit
		}
		m.resetInput()
		if why := checkName(name); why != "" {
			m.note(fmt.Sprintf("%q: %s; choose another name", name, why))
			return m, nil
		}
		m.state, m.name, m.notice = stateLoggingIn, name, ""
		m.reqs.push(request{kind: reqLogin, text: name})
	case stateChat:
		m.resetInput()
		m.record(value)
		if isQuit(value) {
			return m.leave()
		}
		if !m.v2 {
			if strings.TrimSpace(value) == "/who" {
				m.addLine(noteStyle.Render("* /who is not available with the classic protocol"))
				return m, nil
			}
		} else if cmd, text, isCmd := parseSlash(value); isCmd {
			m.command(cmd)
			return m, nil
		} else {
			value = text
		}
		text := cleanText(value)
		if strings.TrimSpace(text) == "" {
			return m, nil
		}
		if m.v2 && m.current().name == dmView {
			if m.lastDM == "" {
				m.addLine(noteStyle.Render("* nobody to answer yet: /msg NAME TEXT"))
				return m, nil
			}
			m.reqs.push(request{kind: reqMsg, to: m.lastDM, text: text})
			m.vp.GotoBottom()
			m.unread = 0
			return m, nil
		}
		m.reqs.push(request{kind: reqChat, text: text, room: m.current().name})
		if m.v2 {
			// The relay echoes it in room order; it shows then.
			m.vp.GotoBottom()
			m.unread = 0
			return m, nil
		}
		m.addLine(selfStyle.Render(cleanLine(m.name + " (you): " + text)))
		m.vp.GotoBottom() // after sending, show the conversation's end
		m.unread = 0
	}
	return m, nil
}

// leave starts leaving the chat. A second Ctrl-C while busy exits at once.
func (m model) leave() (tea.Model, tea.Cmd) {
	switch m.state {
	case stateAskName:
		return m, tea.Quit
	case stateChat, stateLoggingIn:
		// While logging in, the quit request waits behind the login, so a
		// login that succeeds is still followed by Q.
		m.state = stateLeaving
		m.reqs.push(request{kind: reqQuit})
		return m, nil
	default: // stateLeaving
		if m.quitHit {
			return m, tea.Quit
		}
		m.quitHit = true
		return m, nil
	}
}

// loginResult handles the controller's answer to a login request.
func (m model) loginResult(msg loginMsg) (tea.Model, tea.Cmd) {
	if m.state != stateLoggingIn {
		return m, nil // leaving already; the quit request follows
	}
	switch {
	case errors.Is(msg.err, context.Canceled):
		return m, tea.Quit // ctx ended: leaving quietly, as if Ctrl-C
	case msg.err != nil:
		m.err = msg.err
		return m, tea.Quit
	case msg.reason != "":
		m.state = stateAskName
		m.note(fmt.Sprintf("login as %s refused: %s; choose another name", msg.name, msg.reason))
	default:
		m.state, m.name, m.notice = stateChat, msg.name, ""
		if msg.addr != "" {
			m.addr = msg.addr
		}
		m.v2 = msg.proto == protoV2
		m.rev = msg.rev
		m.remember(msg.name)
		proto, who := "classic protocol", ""
		switch {
		case m.v2 && m.rev >= 1:
			proto, who = "v2", "; /help lists the commands and keys"
		case m.v2:
			proto, who = "v2", "; /who lists the room"
		}
		m.addLine(noteStyle.Render(cleanLine(fmt.Sprintf("* logged in as %s at %s (%s)%s; /quit to leave", m.name, m.addr, proto, who))))
	}
	return m, nil
}

// note shows a system message in the history and the status line.
func (m *model) note(s string) {
	s = cleanLine(s)
	m.notice = s
	m.addLine(noteStyle.Render("* " + s))
}

// addLine appends a history line.
func (m *model) addLine(line string) { m.addLines(line) }

// addLines appends history lines to the view shown, each with the time,
// following the end unless scrolled up.
func (m *model) addLines(lines ...string) { m.addSeqLines(lines, nil) }

// addSeqLines is addLines with the room seq of each line (0, or seqs nil:
// not a room event), which tells where older history starts (history.go).
func (m *model) addSeqLines(lines []string, seqs []uint64) {
	follow := m.vp.AtBottom()
	v := m.current()
	m.lines = append(m.lines, m.stamp(lines)...)
	v.seqs = appendSeqs(v.seqs, len(lines), seqs)
	if len(m.lines) > maxHistory {
		m.lines = v.trimOldest(m.lines)
	}
	m.vp.SetContentLines(m.lines)
	if follow {
		m.vp.GotoBottom()
	} else {
		m.unread += len(lines)
	}
}

func (m *model) seenIfBottom() {
	if m.vp.AtBottom() {
		m.unread = 0
	}
}

func (m *model) resetInput() {
	m.input.Reset()
	m.inOff = 0
}

// prompt is the input line's prompt for the current state.
func (m model) prompt() string {
	if m.state == stateAskName {
		return "name: "
	}
	return "> "
}

// fixInputOffset scrolls the input line horizontally so the cursor shows.
func (m *model) fixInputOffset() {
	m.inOff = inputOffset([]rune(m.input.Value()), m.input.Position(), m.inOff, m.width-ansi.StringWidth(m.prompt()))
}

func (m model) View() tea.View {
	var v tea.View
	v.AltScreen = true
	v.WindowTitle = "chatcli " + m.addr
	if m.width <= 0 || m.height <= 0 {
		return v
	}
	prompt := m.prompt()
	line, col := inputLine(prompt, []rune(m.input.Value()), m.input.Position(), m.inOff, m.width)

	var b strings.Builder
	if m.height >= 3 {
		b.WriteString(m.vp.View())
		b.WriteByte('\n')
	}
	if m.height >= 2 {
		status := ansi.Truncate(m.statusText(), m.width, "")
		status += strings.Repeat(" ", max(m.width-ansi.StringWidth(status), 0))
		b.WriteString(statusStyle.Render(status))
		b.WriteByte('\n')
	}
	b.WriteString(line)
	v.SetContent(b.String())
	if m.state == stateAskName || m.state == stateChat {
		v.Cursor = tea.NewCursor(col, m.height-1)
		v.Cursor.Shape = tea.CursorBar
	}
	return v
}
