package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/muesli/cancelreader"
)

// maxInputLine bounds one script-mode input line; longer ones end the input
// with an error instead of growing the buffer without limit.
const maxInputLine = 1 << 20

// runScript is script mode with the classic protocol: stdin lines out,
// datagrams in, one line each.
func runScript(ctx context.Context, o options, s *session, stdin io.Reader, stdout, stderr io.Writer) int {
	lr := newLineReader(stdin)
	defer lr.stop()
	return runScriptClassic(ctx, o, s, lr, "", stdout, stderr)
}

// runScriptClassic is runScript on a running line reader; first, when not
// empty, is a name read from input already, tried before the next lines.
func runScriptClassic(ctx context.Context, o options, s *session, lr *lineReader, first string, stdout, stderr io.Writer) int {
	if code, ok := scriptLogin(ctx, o, s, lr, first, stderr); !ok {
		return code
	}
	show := func(line string) {
		if o.JSON {
			writeLine(stdout, classicJSON(line))
			return
		}
		writeLine(stdout, line)
	}

	// leave sends Q, printing what arrives meanwhile, and returns code.
	leave := func(code int) int {
		s.quit(show)
		return code
	}
	for {
		select {
		case <-ctx.Done():
			return leave(0)
		case line, ok := <-lr.lines:
			if !ok {
				if err := lr.err; err != nil {
					fmt.Fprintf(stderr, "chatcli: reading input: %v\n", err)
					return leave(1)
				}
				return leave(0)
			}
			if isQuit(line) {
				return leave(0)
			}
			text := cleanText(line)
			if strings.TrimSpace(text) == "" {
				continue
			}
			if err := s.chat(text); err != nil {
				fmt.Fprintln(stderr, s.describe(err))
				return 1
			}
		case p := <-s.in:
			switch kind, line := s.classify(p); kind {
			case recvLine:
				show(line)
			case recvExit:
				fmt.Fprintln(stderr, s.describe(errEnded))
				return 1
			case recvError:
				fmt.Fprintln(stderr, s.describe(p.err))
				return 1
			}
		}
	}
}

// scriptLogin logs in with --name, or with the first input line that the
// relay accepts, starting with first if not empty. ok is false when run
// must return code.
func scriptLogin(ctx context.Context, o options, s *session, lr *lineReader, first string, stderr io.Writer) (code int, ok bool) {
	if o.Name != "" {
		reason, err := s.login(ctx, o.Name)
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return 0, false
		case err != nil:
			fmt.Fprintln(stderr, s.describe(err))
			return 1, false
		case reason != "":
			fmt.Fprintf(stderr, "chatcli: login refused: %s\n", reason)
			return 1, false
		}
		return 0, true
	}
	for {
		var line string
		select {
		case <-ctx.Done():
			return 0, false
		case l, more := <-linesAfter(&first, lr.lines):
			if !more {
				if lr.err != nil {
					fmt.Fprintf(stderr, "chatcli: reading input: %v\n", lr.err)
				} else {
					fmt.Fprintln(stderr, "chatcli: end of input before a name was accepted")
				}
				return 1, false
			}
			line = l
		}
		if isQuit(line) {
			return 0, false
		}
		name := strings.TrimSpace(line)
		if name == "" {
			continue
		}
		if why := checkName(name); why != "" {
			fmt.Fprintf(stderr, "chatcli: login refused: %s; trying the next line as the name\n", why)
			continue
		}
		reason, err := s.login(ctx, name)
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return 0, false
		case err != nil:
			fmt.Fprintln(stderr, s.describe(err))
			return 1, false
		case reason != "":
			fmt.Fprintf(stderr, "chatcli: login refused: %s; trying the next line as the name\n", reason)
			continue
		}
		return 0, true
	}
}

// linesAfter returns a channel that yields *first once (then clears it),
// or lines when *first is empty.
func linesAfter(first *string, lines <-chan string) <-chan string {
	if *first == "" {
		return lines
	}
	c := make(chan string, 1)
	c <- *first
	*first = ""
	return c
}

// writeLine writes line and a newline in one Write, then flushes stdout if
// it buffers, so every received message is visible at once.
func writeLine(w io.Writer, line string) {
	io.WriteString(w, line+"\n")
	if f, ok := w.(interface{ Flush() error }); ok {
		f.Flush()
	}
}

// lineReader reads stdin lines on its own goroutine, so that run can wait
// for input and datagrams at once.
type lineReader struct {
	lines chan string   // closed at end of input; err is set before
	err   error         // why reading stopped, nil at EOF
	done  chan struct{} // closed by stop
	ended chan struct{} // closed when the goroutine returns

	src    io.Reader
	cancel cancelreader.CancelReader // non-nil when src is a cancellable *os.File
}

func newLineReader(r io.Reader) *lineReader {
	lr := &lineReader{
		lines: make(chan string),
		done:  make(chan struct{}),
		ended: make(chan struct{}),
		src:   r,
	}
	// An *os.File pipe or terminal can block in Read for ever; epoll lets
	// stop interrupt it. Regular files and /dev/null cannot be polled, but
	// they never block either.
	if f, ok := r.(*os.File); ok {
		if cr, err := cancelreader.NewReader(f); err == nil {
			lr.cancel = cr
			lr.src = cr
		}
	}
	go lr.loop()
	return lr
}

func (lr *lineReader) loop() {
	defer close(lr.ended)
	sc := bufio.NewScanner(lr.src)
	sc.Buffer(make([]byte, 0, 4096), maxInputLine)
	for sc.Scan() {
		select {
		case lr.lines <- strings.TrimSuffix(sc.Text(), "\r"):
		case <-lr.done:
			return
		}
	}
	lr.err = sc.Err()
	if errors.Is(lr.err, cancelreader.ErrCanceled) {
		return // stopped: nobody reads lines any more
	}
	close(lr.lines)
}

// stop makes the reader goroutine end: it cancels a pollable *os.File read,
// closes any other io.Closer, and waits a little for the goroutine. A plain
// io.Reader that blocks cannot be interrupted; its goroutine ends when its
// Read returns.
func (lr *lineReader) stop() {
	close(lr.done)
	select {
	case <-lr.ended:
	default:
		switch {
		case lr.cancel != nil:
			lr.cancel.Cancel()
		default:
			if c, ok := lr.src.(io.Closer); ok {
				if _, isFile := lr.src.(*os.File); !isFile {
					c.Close()
				}
			}
		}
	}
	select {
	case <-lr.ended:
		if lr.cancel != nil {
			lr.cancel.Close()
		}
	case <-time.After(time.Second):
	}
}
