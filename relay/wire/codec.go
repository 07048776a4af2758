package wire

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The v2 frame codec, written by hand for the hot path. encoding/json is
// its reference: decodeFrame accepts exactly the lines json.Unmarshal into
// a Frame accepts and yields the same Frame, and appendFrameJSON writes
// exactly the bytes a json.Encoder with SetEscapeHTML(false) writes. The
// golden vectors and the differential fuzz tests (v2codec_test.go) hold
// both to that.

// maxJSONNesting is encoding/json's bound on nested objects and arrays; a
// deeper line is rejected, as json.Unmarshal rejects it.
const maxJSONNesting = 10000

// decodeV2 is DecodeV2. With alias set, the frames' strings point into b
// itself (no copy; the caller guarantees b is neither modified nor reused
// while they are in use); otherwise they share one private copy of b.
// Strings with escapes are always freshly allocated. With rows set, a line
// that is a JSON array is a chat row of revision 3 (decodeRow). More than
// maxLines lines is ErrV2TooManyFrames.
func decodeV2(dst []Frame, b []byte, alias, rows bool, maxLines int) ([]Frame, error) {
	if !IsV2(b) {
		return dst, ErrUnknownVerb
	}
	if !utf8.Valid(b) {
		return dst, ErrBadUTF8
	}
	var s string
	if alias {
		s = unsafeString(b)
	} else {
		s = string(b)
	}
	start := len(dst)
	rest := s[len(V2Magic):]
	for len(rest) > 0 {
		line := rest
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		line = strings.TrimSuffix(line, "\r")
		if len(strings.TrimSpace(line)) == 0 {
			continue
		}
		if len(dst)-start == maxLines {
			clear(dst[start:])
			return dst[:start], ErrV2TooManyFrames
		}
		var f Frame
		switch {
		case rows && line[0] == '[':
			if !decodeRow(line, &f) {
				clear(dst[start:])
				return dst[:start], ErrV2BadFrame
			}
		case line[0] != '{' || !decodeFrame(line, &f) || f.T == "":
			clear(dst[start:])
			return dst[:start], ErrV2BadFrame
		}
		if len(f.Names) == 0 {
			f.Names = nil // "names":[] and no names are the same
		}
		dst = append(dst, f)
	}
	if len(dst) == start {
		return dst, ErrV2NoFrames
	}
	return dst, nil
}

// frameDec is the state of decoding one frame line.
type frameDec struct {
	s string
	i int
}

// decodeFrame decodes one line holding a JSON object into f (which should
// be zero), as json.Unmarshal(line, f) would. It reports false exactly
// when json.Unmarshal would return an error. s must be valid UTF-8.
func decodeFrame(s string, f *Frame) bool {
	d := frameDec{s: s}
	d.ws()
	if !d.object(f) {
		return false
	}
	d.ws()
	return d.i == len(d.s)
}

func (d *frameDec) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// eat consumes c if it is next.
func (d *frameDec) eat(c byte) bool {
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *frameDec) peek() byte {
	if d.i < len(d.s) {
		return d.s[d.i]
	}
	return 0
}

// frame fields, as matched by name.
const (
	fUnknown = iota
	fT
	fRoom
	fSeq
	fEpoch
	fFrom
	fName
	fID
	fText
	fToken
	fCookie
	fLast
	fFromSeq
	fToSeq
	fCount
	fHistory
	fCode
	fReason
	fRetryMS
	fNames
	fMore
	fRev
	fTo
	fTopic
	fKey
	fLimit
	fLocked
	fBefore
	fLost
	fPad
)

// fieldOf matches a key as encoding/json does: the exact name, else the
// name under Unicode simple case folding (so "SEQ" and "ſeq" are "seq").
func fieldOf(key string) int {
	switch key {
	case "t":
		return fT
	case "room":
		return fRoom
	case "seq":
		return fSeq
	case "epoch":
		return fEpoch
	case "from":
		return fFrom
	case "name":
		return fName
	case "id":
		return fID
	case "text":
		return fText
	case "token":
		return fToken
	case "cookie":
		return fCookie
	case "last":
		return fLast
	case "from_seq":
		return fFromSeq
	case "to_seq":
		return fToSeq
	case "count":
		return fCount
	case "history":
		return fHistory
	case "code":
		return fCode
	case "reason":
		return fReason
	case "retry_ms":
		return fRetryMS
	case "names":
		return fNames
	case "more":
		return fMore
	case "rev":
		return fRev
	case "to":
		return fTo
	case "topic":
		return fTopic
	case "key":
		return fKey
	case "limit":
		return fLimit
	case "locked":
		return fLocked
	case "before":
		return fBefore
	case "lost":
		return fLost
	case "pad":
		return fPad
	}
	// Every field name is at most 8 ASCII bytes, and folding maps each
	// rune to one rune: a key of more runes matches nothing.
	var buf [8]byte
	n := 0
	for _, r := range key {
		if n == len(buf) {
			return fUnknown
		}
		r = foldRune(r)
		if r >= utf8.RuneSelf {
			return fUnknown // no field name has a non-ASCII rune
		}
		buf[n] = byte(r)
		n++
	}
	switch string(buf[:n]) {
	case "T":
		return fT
	case "ROOM":
		return fRoom
	case "SEQ":
		return fSeq
	case "EPOCH":
		return fEpoch
	case "FROM":
		return fFrom
	case "NAME":
		return fName
	case "ID":
		return fID
	case "TEXT":
		return fText
	case "TOKEN":
		return fToken
	case "COOKIE":
		return fCookie
	case "LAST":
		return fLast
	case "FROM_SEQ":
		return fFromSeq
	case "TO_SEQ":
		return fToSeq
	case "COUNT":
		return fCount
	case "HISTORY":
		return fHistory
	case "CODE":
		return fCode
	case "REASON":
		return fReason
	case "RETRY_MS":
		return fRetryMS
	case "NAMES":
		return fNames
	case "MORE":
		return fMore
	case "REV":
		return fRev
	case "TO":
		return fTo
	case "TOPIC":
		return fTopic
	case "KEY":
		return fKey
	case "LIMIT":
		return fLimit
	case "LOCKED":
		return fLocked
	case "BEFORE":
		return fBefore
	case "LOST":
		return fLost
	case "PAD":
		return fPad
	}
	return fUnknown
}

// foldRune is encoding/json's: the smallest rune of r's simple case
// folding orbit.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			r -= 'a' - 'A'
		}
		return r
	}
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// object decodes the frame object at d.i into f.
func (d *frameDec) object(f *Frame) bool {
	if !d.eat('{') {
		return false
	}
	d.ws()
	if d.eat('}') {
		return true
	}
	for {
		key, ok := d.str()
		if !ok {
			return false
		}
		d.ws()
		if !d.eat(':') {
			return false
		}
		d.ws()
		if !d.field(f, fieldOf(key)) {
			return false
		}
		d.ws()
		if d.eat('}') {
			return true
		}
		if !d.eat(',') {
			return false
		}
		d.ws()
	}
}

// field decodes the value at d.i into field k of f. A JSON null leaves a
// string, number or bool as it is and clears the names, as json does; any
// other mismatch of types is an error.
func (d *frameDec) field(f *Frame, k int) bool {
	var sp *string
	var up *uint64
	var bp *bool
	switch k {
	case fUnknown:
		return d.skipValue()
	case fT:
		sp = &f.T
	case fRoom:
		sp = &f.Room
	case fEpoch:
		sp = &f.Epoch
	case fFrom:
		sp = &f.From
	case fName:
		sp = &f.Name
	case fText:
		sp = &f.Text
	case fToken:
		sp = &f.Token
	case fCookie:
		sp = &f.Cookie
	case fCode:
		sp = &f.Code
	case fReason:
		sp = &f.Reason
	case fPad:
		sp = &f.Pad
	case fTo:
		sp = &f.To
	case fTopic:
		sp = &f.Topic
	case fKey:
		sp = &f.Key
	case fRev:
		up = &f.Rev
	case fLimit:
		up = &f.Limit
	case fLocked:
		bp = &f.Locked
	case fBefore:
		up = &f.Before
	case fLost:
		up = &f.Lost
	case fSeq:
		up = &f.Seq
	case fID:
		up = &f.ID
	case fLast:
		up = &f.Last
	case fFromSeq:
		up = &f.FromSeq
	case fToSeq:
		up = &f.ToSeq
	case fCount:
		up = &f.Count
	case fHistory:
		bp = &f.History
	case fMore:
		bp = &f.More
	case fRetryMS:
		if d.literal("null") {
			return true
		}
		tok, ok := d.number()
		if !ok {
			return false
		}
		n, err := strconv.ParseInt(tok, 10, 64)
		if err != nil {
			return false
		}
		f.RetryMS = n
		return true
	case fNames:
		return d.names(f)
	}
	switch {
	case sp != nil:
		if d.literal("null") {
			return true
		}
		v, ok := d.str()
		if ok {
			*sp = v
		}
		return ok
	case up != nil:
		if d.literal("null") {
			return true
		}
		n, ok := d.uint()
		if ok {
			*up = n
		}
		return ok
	default:
		switch {
		case d.literal("null"):
		case d.literal("true"):
			*bp = true
		case d.literal("false"):
			*bp = false
		default:
			return false
		}
		return true
	}
}

// names decodes the names array into f.Names as json does into a slice:
// elements are decoded in place over the slice's existing backing array
// (so a null element keeps what an earlier "names" of the same frame left
// there), the slice is cut to the elements read, and an empty array is an
// empty, non-nil slice.
func (d *frameDec) names(f *Frame) bool {
	if d.literal("null") {
		f.Names = nil
		return true
	}
	if !d.eat('[') {
		return false
	}
	v := f.Names
	i := 0
	d.ws()
	if !d.eat(']') {
		for {
			if i >= cap(v) {
				v = append(v[:cap(v)], "")[:i]
			}
			if i >= len(v) {
				v = v[:i+1]
			}
			if !d.literal("null") {
				s, ok := d.str()
				if !ok {
					return false
				}
				v[i] = s
			}
			i++
			d.ws()
			if d.eat(']') {
				break
			}
			if !d.eat(',') {
				return false
			}
			d.ws()
		}
	}
	if i < len(v) {
		v = v[:i]
	}
	if i == 0 {
		v = []string{}
	}
	f.Names = v
	return true
}

// literal consumes lit if it is next.
func (d *frameDec) literal(lit string) bool {
	if strings.HasPrefix(d.s[d.i:], lit) {
		d.i += len(lit)
		return true
	}
	return false
}

// uint consumes a JSON number and returns it, if it is a uint64 (as
// encoding/json decodes one: no fraction, no exponent, no sign).
func (d *frameDec) uint() (uint64, bool) {
	tok, ok := d.number()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(tok, 10, 64)
	return n, err == nil
}

// number consumes a JSON number and returns its text.
func (d *frameDec) number() (string, bool) {
	s, i := d.s, d.i
	start := i
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return "", false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return "", false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return "", false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	d.i = i
	return s[start:i], true
}

// str consumes a JSON string, which must be next, and returns its value:
// a substring of the line when it has no escapes, else a new string,
// unescaped as encoding/json does (a lone surrogate becomes U+FFFD).
func (d *frameDec) str() (string, bool) {
	if d.peek() != '"' {
		return "", false
	}
	s := d.s
	i := d.i + 1
	start := i
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			d.i = i + 1
			return s[start:i], true
		case c == '\\':
			return d.strEscaped(start, i)
		case c < 0x20:
			return "", false
		}
		i++
	}
	return "", false
}

// strEscaped finishes a string whose first escape is at i.
func (d *frameDec) strEscaped(start, i int) (string, bool) {
	s := d.s
	// Every escape is longer than what it stands for.
	b := make([]byte, 0, len(s)-start)
	b = append(b, s[start:i]...)
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			d.i = i + 1
			return string(b), true
		case c < 0x20:
			return "", false
		case c != '\\':
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(s) {
			return "", false
		}
		switch e := s[i+1]; e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r := hex4(s, i+2)
			if r < 0 {
				return "", false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if r2 := u4(s, i); r2 >= 0 {
					if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
						b = utf8.AppendRune(b, dec)
						i += 6
						continue
					}
				}
				r = unicode.ReplacementChar
			}
			b = utf8.AppendRune(b, r)
			continue
		default:
			return "", false
		}
		i += 2
	}
	return "", false
}

// hex4 returns the value of the four hex digits at s[i:], or -1.
func hex4(s string, i int) rune {
	if i+4 > len(s) {
		return -1
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// u4 returns the rune of a `\uXXXX` escape at s[i:], or -1.
func u4(s string, i int) rune {
	if i+1 >= len(s) || s[i] != '\\' || s[i+1] != 'u' {
		return -1
	}
	return hex4(s, i+2)
}

// skipString consumes a JSON string without decoding it.
func (d *frameDec) skipString() bool {
	s := d.s
	i := d.i + 1
	for i < len(s) {
		switch c := s[i]; {
		case c == '"':
			d.i = i + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if i+1 >= len(s) {
				return false
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if hex4(s, i+2) < 0 {
					return false
				}
				i += 6
			default:
				return false
			}
			continue
		}
		i++
	}
	return false
}

// skipValue consumes any JSON value (the value of an unknown field, which
// sits inside the frame object at depth 1), checking its syntax and its
// depth as encoding/json's scanner does, without recursion.
func (d *frameDec) skipValue() bool {
	var isObj [maxJSONNesting/64 + 1]uint64 // per open container: object (1) or array (0)
	level := 0                              // containers opened here; the frame is one more
	for {
		// A value starts at d.i.
		d.ws()
		switch c := d.peek(); {
		case c == '{' || c == '[':
			if 1+level+1 > maxJSONNesting {
				return false
			}
			d.i++
			if c == '{' {
				isObj[level/64] |= 1 << (level % 64)
			} else {
				isObj[level/64] &^= 1 << (level % 64)
			}
			level++
			d.ws()
			if (c == '{' && d.eat('}')) || (c == '[' && d.eat(']')) {
				level--
				break // an empty container is a whole value
			}
			if c == '{' && !d.key() {
				return false
			}
			continue
		case c == '"':
			if !d.skipString() {
				return false
			}
		case c == 't':
			if !d.literal("true") {
				return false
			}
		case c == 'f':
			if !d.literal("false") {
				return false
			}
		case c == 'n':
			if !d.literal("null") {
				return false
			}
		case c == '-' || ('0' <= c && c <= '9'):
			if _, ok := d.number(); !ok {
				return false
			}
		default:
			return false
		}
		// After a value: close containers or move to the next element.
		for {
			if level == 0 {
				return true
			}
			d.ws()
			obj := isObj[(level-1)/64]&(1<<((level-1)%64)) != 0
			if d.eat(',') {
				if obj {
					d.ws()
					if !d.key() {
						return false
					}
				}
				break
			}
			if (obj && d.eat('}')) || (!obj && d.eat(']')) {
				level--
				continue
			}
			return false
		}
	}
}

// key consumes an object key and its colon, in a skipped value.
func (d *frameDec) key() bool {
	if d.peek() != '"' || !d.skipString() {
		return false
	}
	d.ws()
	return d.eat(':')
}

// appendFrameJSON appends f as encoding/json encodes it (fields in order,
// zero values omitted except "t", HTML characters not escaped) followed by
// "\n", as json.Encoder.Encode writes it.
func appendFrameJSON(dst []byte, f *Frame) []byte {
	dst = append(dst, `{"t":`...)
	dst = appendJSONString(dst, f.T)
	dst = appendStringField(dst, `,"room":`, f.Room)
	dst = appendUintField(dst, `,"seq":`, f.Seq)
	dst = appendStringField(dst, `,"epoch":`, f.Epoch)
	dst = appendStringField(dst, `,"from":`, f.From)
	dst = appendStringField(dst, `,"name":`, f.Name)
	dst = appendUintField(dst, `,"id":`, f.ID)
	dst = appendStringField(dst, `,"text":`, f.Text)
	dst = appendStringField(dst, `,"token":`, f.Token)
	dst = appendStringField(dst, `,"cookie":`, f.Cookie)
	dst = appendUintField(dst, `,"last":`, f.Last)
	dst = appendUintField(dst, `,"from_seq":`, f.FromSeq)
	dst = appendUintField(dst, `,"to_seq":`, f.ToSeq)
	dst = appendUintField(dst, `,"count":`, f.Count)
	if f.History {
		dst = append(dst, `,"history":true`...)
	}
	dst = appendStringField(dst, `,"code":`, f.Code)
	dst = appendStringField(dst, `,"reason":`, f.Reason)
	if f.RetryMS != 0 {
		dst = strconv.AppendInt(append(dst, `,"retry_ms":`...), f.RetryMS, 10)
	}
	if len(f.Names) > 0 {
		dst = append(dst, `,"names":[`...)
		for i, n := range f.Names {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, n)
		}
		dst = append(dst, ']')
	}
	if f.More {
		dst = append(dst, `,"more":true`...)
	}
	dst = appendUintField(dst, `,"rev":`, f.Rev)
	dst = appendStringField(dst, `,"to":`, f.To)
	dst = appendStringField(dst, `,"topic":`, f.Topic)
	dst = appendStringField(dst, `,"key":`, f.Key)
	dst = appendUintField(dst, `,"limit":`, f.Limit)
	if f.Locked {
		dst = append(dst, `,"locked":true`...)
	}
	dst = appendUintField(dst, `,"before":`, f.Before)
	dst = appendUintField(dst, `,"lost":`, f.Lost)
	dst = appendStringField(dst, `,"pad":`, f.Pad)
	return append(dst, '}', '\n')
}

func appendStringField(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	return appendJSONString(append(dst, key...), v)
}

func appendUintField(dst []byte, key string, v uint64) []byte {
	if v == 0 {
		return dst
	}
	return strconv.AppendUint(append(dst, key...), v, 10)
}

const lowerHex = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json quotes it without
// HTML escaping: `"` and `\` escaped, \b \f \n \r \t by name, other
// control characters as \u00XX, invalid UTF-8 as \ufffd, U+2028 and
// U+2029 as \u2028 and \u2029; everything else (DEL included) verbatim.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', lowerHex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
