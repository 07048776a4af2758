package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay/relaytest"
)

var (
	buildOnce sync.Once
	buildDir  string // removed by TestMain
	buildBin  string
	buildErr  string
)

// buildChatcli builds this command once per test binary.
func buildChatcli(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			if goTool, err = exec.LookPath("go"); err != nil {
				buildErr = "no go tool to build chatcli with"
				return
			}
		}
		dir, err := os.MkdirTemp("", "chatcli-test")
		if err != nil {
			buildErr = err.Error()
			return
		}
		buildDir = dir
		bin := filepath.Join(dir, "chatcli")
		if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Sprintf("go build: %v\n%s", err, out)
			return
		}
		buildBin = bin
	})
	if buildBin == "" {
		t.Fatal(buildErr)
	}
	return buildBin
}

// tmuxPane drives one detached tmux session on a private server socket.
type tmuxPane struct {
	t       *testing.T
	tmux    string
	sock    string
	session string
}

func (p *tmuxPane) cmd(args ...string) (string, error) {
	cmd := exec.Command(p.tmux, append([]string{"-u", "-S", p.sock}, args...)...)
	cmd.Env = append(os.Environ(), "LANG=C.UTF-8", "TERM=xterm-256color")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *tmuxPane) must(args ...string) string {
	p.t.Helper()
	out, err := p.cmd(args...)
	if err != nil {
		p.t.Fatalf("tmux %q: %v\n%s", args, err, out)
	}
	return out
}

// capture returns the pane's visible lines, trailing spaces trimmed and
// the time each message line starts with ("15:04 ") removed.
func (p *tmuxPane) capture() []string {
	p.t.Helper()
	lines := p.captureRaw()
	for i, l := range lines {
		lines[i] = timePrefix.ReplaceAllString(l, "")
	}
	return lines
}

var timePrefix = regexp.MustCompile(`^\d\d:\d\d `)

// captureRaw is capture with the times.
func (p *tmuxPane) captureRaw() []string {
	p.t.Helper()
	out := p.must("capture-pane", "-p", "-J", "-t", p.session)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return lines
}

// waitScreen polls the pane until cond holds, and fails with the screen.
func (p *tmuxPane) waitScreen(what string, cond func([]string) bool) []string {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := p.capture()
		if cond(lines) {
			return lines
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s; screen:\n%s", what, strings.Join(lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inputLine is the last line starting with the chat prompt.
func inputLineOf(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "> ") {
			return lines[i]
		}
	}
	return ""
}

var bobLine = regexp.MustCompile(`^bob says: msg (\d+)$`)

// lastBob is the highest message number of bob on screen, or -1.
func lastBob(lines []string) int {
	last := -1
	for _, l := range lines {
		if m := bobLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			last = max(last, n)
		}
	}
	return last
}

// startTmux runs chatcli with args in a detached 100x30 tmux session on a
// private server, killed when the test ends. It skips the test when tmux is
// not installed.
func startTmux(t *testing.T, bin string, args ...string) *tmuxPane {
	t.Helper()
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux is not on PATH: skipping the real-terminal test")
	}
	// A short directory: Unix socket paths are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "tmux")
	if err != nil {
		t.Fatal(err)
	}
	p := &tmuxPane{
		t:       t,
		tmux:    tmux,
		sock:    filepath.Join(dir, "s"),
		session: fmt.Sprintf("chatcli%d", os.Getpid()),
	}
	// The shell wrapper keeps the pane open after chatcli exits, to see how.
	p.must(append([]string{"new-session", "-d", "-x", "100", "-y", "30", "-s", p.session, "-e", "LANG=C.UTF-8",
		"sh", "-c", `"$0" "$@"; echo "chatcli exited $?"; sleep 60`, bin}, args...)...)
	t.Cleanup(func() {
		p.cmd("kill-server")
		os.RemoveAll(dir)
	})
	return p
}

// A real terminal: Chinese typed in pieces while messages pour in stays
// whole on the input line, the cursor sits after its last double-width
// character, and Enter sends it whole.
func TestTUIChineseInputUnderTmux(t *testing.T) {
	bin := buildChatcli(t)
	r := relaytest.Start(t)
	addr := r.Addr.String()
	p := startTmux(t, bin, "--name", "张三", addr)

	p.waitScreen("the status line", func(l []string) bool {
		return strings.Contains(l[len(l)-2], "张三 @ "+addr)
	})

	bob := dialRaw(t, addr, "bob")
	p.waitScreen("bob's join", func(l []string) bool { return hasLine(strings.Join(l, "\n"), "bob joined the chat room") })

	// bob chats every 30 ms until the test is done (at most 600 lines).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(30 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 600; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				bob.send(t, fmt.Sprintf("C bob msg %d", i))
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)

	// Type once the history overflows the viewport, so every message scrolls.
	p.waitScreen("bob's messages filling the screen", func(l []string) bool { return lastBob(l) >= 30 })
	typed := ""
	for _, piece := range []string{"你好，", "世界！", "测试中文输入"} {
		before := lastBob(p.capture())
		p.must("send-keys", "-t", p.session, "-l", piece)
		typed += piece
		p.waitScreen("the input line "+typed+" and more of bob", func(l []string) bool {
			return inputLineOf(l) == "> "+typed && lastBob(l) > before
		})
	}
	want := "你好，世界！测试中文输入"
	lines := p.waitScreen("messages scrolling above the intact input", func(l []string) bool {
		return inputLineOf(l) == "> "+want && lastBob(l) > 0
	})
	t.Logf("screen while typing:\n%s", strings.Join(lines, "\n"))
	if got := lines[len(lines)-1]; got != "> "+want {
		t.Errorf("last screen line %q, want the input line", got)
	}
	for i, l := range lines[:len(lines)-2] {
		if l != "" && !bobLine.MatchString(l) && l != "bob joined the chat room" && !strings.HasPrefix(l, "* logged in as 张三") {
			t.Errorf("garbled screen line %d: %q", i, l)
		}
	}
	// 2 columns of prompt, then 12 double-width characters.
	if x := strings.TrimSpace(p.must("display-message", "-p", "-t", p.session, "#{cursor_x}")); x != "26" {
		t.Errorf("cursor at column %s, want 26", x)
	}

	p.must("send-keys", "-t", p.session, "Enter")
	bob.waitFor(t, "张三 says: "+want)
	p.waitScreen("the emptied input line", func(l []string) bool { return l[len(l)-1] == ">" })

	// A line wider than the screen scrolls horizontally, by display columns.
	long := strings.Repeat("长文本", 20) + "尾" // 61 double-width runes: 122 columns
	p.must("send-keys", "-t", p.session, "-l", long)
	lines = p.waitScreen("the end of the long line", func(l []string) bool {
		return strings.HasSuffix(l[len(l)-1], "长文本尾")
	})
	if in := lines[len(lines)-1]; ansiWidth(in) > 100 || !strings.HasPrefix(in, "> ") {
		t.Errorf("long input line %q is %d columns", in, ansiWidth(in))
	}
	if x := strings.TrimSpace(p.must("display-message", "-p", "-t", p.session, "#{cursor_x}")); x != "98" && x != "99" {
		t.Errorf("cursor at column %s after a long line, want the last columns", x)
	}
	p.must("send-keys", "-t", p.session, "C-u") // delete the line
	p.waitScreen("the emptied input line", func(l []string) bool { return l[len(l)-1] == ">" })

	p.must("send-keys", "-t", p.session, "C-c")
	bob.waitFor(t, "张三 left the chat room")
	p.waitScreen("chatcli's exit", func(l []string) bool { return hasLine(strings.Join(l, "\n"), "chatcli exited 0") })
}

// Without --name the TUI asks for one, shows a refusal and asks again;
// Ctrl-D on the empty line leaves.
func TestTUIAskNameUnderTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not on PATH: skipping the real-terminal test")
	}
	bin := buildChatcli(t)
	r := relaytest.Start(t)
	addr := r.Addr.String()
	bob := dialRaw(t, addr, "bob")
	p := startTmux(t, bin, addr)

	p.waitScreen("the name prompt", func(l []string) bool { return l[len(l)-1] == "name:" })
	p.must("send-keys", "-t", p.session, "-l", "admin")
	p.must("send-keys", "-t", p.session, "Enter")
	p.waitScreen("the refusal", func(l []string) bool {
		return strings.Contains(strings.Join(l, "\n"), "login as admin refused: name reserved") && l[len(l)-1] == "name:"
	})
	p.must("send-keys", "-t", p.session, "-l", "小明")
	p.must("send-keys", "-t", p.session, "Enter")
	bob.waitFor(t, "小明 joined the chat room")
	p.waitScreen("the chat status line", func(l []string) bool {
		return strings.Contains(l[len(l)-2], "小明 @ "+addr) && l[len(l)-1] == ">"
	})
	bob.send(t, "C bob 欢迎")
	p.waitScreen("bob's welcome", func(l []string) bool { return hasLine(strings.Join(l, "\n"), "bob says: 欢迎") })

	// Ctrl-D edits a non-empty line (delete forward) and leaves on an empty one.
	p.must("send-keys", "-t", p.session, "-l", "x")
	p.must("send-keys", "-t", p.session, "C-d")
	p.must("send-keys", "-t", p.session, "BSpace")
	p.waitScreen("the emptied input line", func(l []string) bool { return l[len(l)-1] == ">" })
	if bob.has("小明 left the chat room") {
		t.Fatal("Ctrl-D on a non-empty line left the chat")
	}
	p.must("send-keys", "-t", p.session, "C-d")
	bob.waitFor(t, "小明 left the chat room")
	p.waitScreen("chatcli's exit", func(l []string) bool { return hasLine(strings.Join(l, "\n"), "chatcli exited 0") })
}

// The relay ending the session (a kick) closes the TUI, prints the last
// notice and exits 1.
func TestTUIKickedUnderTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not on PATH: skipping the real-terminal test")
	}
	bin := buildChatcli(t)
	r := relaytest.Start(t)
	addr := r.Addr.String()
	p := startTmux(t, bin, "--name", "张三", addr)
	p.waitScreen("the status line", func(l []string) bool { return strings.Contains(l[len(l)-2], "张三 @ "+addr) })

	if _, err := r.Server.Kick("张三", "刷屏"); err != nil {
		t.Fatal(err)
	}
	want := "chatcli: the relay at " + addr + " ended the session; last message: Admin notice: you were removed by the administrator: 刷屏"
	p.waitScreen("the kick notice and exit 1", func(l []string) bool {
		all := strings.Join(l, "\n")
		return hasLine(all, want) && hasLine(all, "chatcli exited 1")
	})
}
