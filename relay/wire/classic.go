package wire

import (
	"strings"
	"unicode/utf8"
	"unsafe"
)

// The classic protocol: one datagram is one request, UTF-8 text, fields
// separated by single spaces. See docs/PROTOCOL.md.
const (
	// VerbLogin is `L <name>`.
	VerbLogin byte = 'L'
	// VerbChat is `C <name> <text>`.
	VerbChat byte = 'C'
	// VerbQuit is `Q <name>`.
	VerbQuit byte = 'Q'

	// ReplyOK is the exact login-success reply.
	ReplyOK = "OK"
	// ReplyExit is the exact reply to a quit, and the last datagram a kicked
	// or shut-down member receives.
	ReplyExit = "EXIT"

	// MaxClassicReply is the largest datagram the relay ever sends to a
	// classic client: the reference client reads 2048 bytes after login.
	MaxClassicReply = 2048
	// MaxReasonBytes bounds a login refusal: the reference client reads the
	// login reply into 1024 bytes, and a reason is meant to be one short line.
	MaxReasonBytes = 64
	// DefaultMaxDatagram is the default bound on an incoming datagram.
	DefaultMaxDatagram = 1024
)

// Request is one parsed classic datagram. From ParseClassic its strings
// are its own; from the relay's in-place parse (ParseClassicInPlace) they
// alias the datagram buffer and are valid only while the handler runs.
type Request struct {
	Verb byte   // VerbLogin, VerbChat or VerbQuit
	Name string // the name field exactly as sent (not yet validated)
	Text string // VerbChat only: everything after the second space, verbatim
}

// ParseClassic decodes one classic datagram. It strips one trailing "\n" or
// "\r\n", then requires valid UTF-8, a known verb and the fields that verb
// needs. It never fails for a login with an empty or invalid name: every
// `L` gets exactly one reply, so name validation is left to the handler.
// The Request does not alias b (its fields share one copy), so b may be
// reused at once.
//
// The returned error is one of ErrEmpty, ErrBadUTF8, ErrUnknownVerb or
// ErrMalformed.
func ParseClassic(b []byte) (Request, error) {
	r, err := parseClassic(unsafeString(b))
	if err != nil || r.Name == "" {
		return r, err // nothing to copy
	}
	// Name starts at b[2] and Text, if any, one space after it: one copy
	// holds both.
	end := 2 + len(r.Name)
	if r.Verb == VerbChat {
		end += 1 + len(r.Text)
	}
	c := string(b[2:end])
	r.Name = c[:len(r.Name)]
	if r.Verb == VerbChat {
		r.Text = c[len(r.Name)+1:]
	}
	return r, nil
}

// ParseClassicInPlace is ParseClassic without the copy: the Request's
// strings alias b, so it is valid only while b is neither modified nor
// reused (for the relay: until the handler returns). Whatever outlives
// that must be cloned (the relay clones the name it keeps; a broadcast
// encodes the text into bytes of its own). It does not allocate.
func ParseClassicInPlace(b []byte) (Request, error) { return parseClassic(unsafeString(b)) }

// unsafeString returns a string sharing b's bytes.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func parseClassic(b string) (Request, error) {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	if len(b) == 0 {
		return Request{}, ErrEmpty
	}
	if !utf8.ValidString(b) {
		return Request{}, ErrBadUTF8
	}
	verb := b[0]
	switch verb {
	case VerbLogin, VerbChat, VerbQuit:
	default:
		return Request{}, ErrUnknownVerb
	}
	if len(b) == 1 {
		if verb == VerbLogin {
			return Request{Verb: verb}, nil // `L` alone: an empty name, refused with a reason
		}
		return Request{}, ErrMalformed
	}
	if b[1] != ' ' {
		return Request{}, ErrUnknownVerb // e.g. "LOGIN alice", "Chello"
	}
	rest := b[2:]
	switch verb {
	case VerbLogin:
		return Request{Verb: verb, Name: rest}, nil
	case VerbQuit:
		if len(rest) == 0 {
			return Request{}, ErrMalformed
		}
		return Request{Verb: verb, Name: rest}, nil
	default: // VerbChat
		i := strings.IndexByte(rest, ' ')
		if i <= 0 || i == len(rest)-1 {
			return Request{}, ErrMalformed // no name, or no text
		}
		return Request{Verb: verb, Name: rest[:i], Text: rest[i+1:]}, nil
	}
}

// StripNewline removes one trailing "\r\n" or "\n", so that `nc -u` input works.
func StripNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// AppendLogin appends the classic login request `L name` to dst.
func AppendLogin(dst []byte, name string) []byte {
	return append(append(dst, VerbLogin, ' '), name...)
}

// AppendChat appends the classic chat request `C name text` to dst.
func AppendChat(dst []byte, name, text string) []byte {
	dst = append(append(dst, VerbChat, ' '), name...)
	return append(append(dst, ' '), text...)
}

// AppendQuit appends the classic quit request `Q name` to dst.
func AppendQuit(dst []byte, name string) []byte {
	return append(append(dst, VerbQuit, ' '), name...)
}

// TruncateUTF8 returns the longest prefix of s that is at most n bytes long
// and does not end inside a UTF-8 sequence.
func TruncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
