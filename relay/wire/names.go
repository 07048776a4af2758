package wire

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// MaxNameRunes bounds a name, counted in code points after PRECIS enforcement.
const MaxNameRunes = 32

// reservedNames belong to the relay itself: nobody may log in as the
// administrator. They are compared by PRECIS compare key, so case and width
// variants are reserved too.
var reservedNames = []string{"管理员", "admin", "administrator", "server", "system"}

var reservedKeys = func() map[string]bool {
	m := make(map[string]bool, len(reservedNames))
	for _, n := range reservedNames {
		k, err := precis.Nickname.CompareKey(n)
		if err != nil {
			panic("relay: reserved name " + n + ": " + err.Error())
		}
		m[k] = true
	}
	return m
}()

// CanonicalName validates a requested name with the PRECIS Nickname profile
// (RFC 8266). It returns the name to display (enforced, case kept) and the key
// that makes names unique (CompareKey: case- and width-folded), so "Alice",
// "ALICE" and "Ａｌｉｃｅ" share one key.
//
// A name must have 1 to MaxNameRunes code points after enforcement, no space
// of any kind and no control character. The error is ErrNameInvalid or
// ErrNameReserved.
func CanonicalName(raw string) (display, key string, err error) {
	if raw == "" || !utf8.ValidString(raw) {
		return "", "", ErrNameInvalid
	}
	for _, r := range raw {
		// The Nickname profile maps every space to U+0020 and keeps it; we do
		// not allow spaces at all, since the classic protocol splits on them.
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "", "", ErrNameInvalid
		}
	}
	display, err = precis.Nickname.String(raw)
	if err != nil || display == "" || strings.ContainsRune(display, ' ') {
		return "", "", ErrNameInvalid
	}
	if utf8.RuneCountInString(display) > MaxNameRunes {
		return "", "", ErrNameInvalid
	}
	key, err = precis.Nickname.CompareKey(raw)
	if err != nil {
		return "", "", ErrNameInvalid
	}
	if reservedKeys[key] {
		return "", "", ErrNameReserved
	}
	return display, key, nil
}

// CanonicalRoom validates a room name as CanonicalName does a member's
// name: the PRECIS Nickname profile, unique by its compare key (so "Dev",
// "DEV" and "Ｄｅｖ" are one room), 1 to MaxRoomRunes code points, no space
// or control character. A room name never starts with "@" (Inbox and its
// kind are the relay's). The error is ErrRoomInvalid.
func CanonicalRoom(raw string) (display, key string, err error) {
	if raw == "" || !utf8.ValidString(raw) || raw[0] == '@' {
		return "", "", ErrRoomInvalid
	}
	for _, r := range raw {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "", "", ErrRoomInvalid
		}
	}
	display, err = precis.Nickname.String(raw)
	if err != nil || display == "" || display[0] == '@' || strings.ContainsRune(display, ' ') ||
		utf8.RuneCountInString(display) > MaxRoomRunes {
		return "", "", ErrRoomInvalid
	}
	if key, err = precis.Nickname.CompareKey(raw); err != nil {
		return "", "", ErrRoomInvalid
	}
	return display, key, nil
}

// CheckText reports ErrTextControl when chat text carries a character that
// could rewrite other members' terminals or fake a relay line: C0 controls
// other than TAB, DEL, C1 controls, the bidi overrides and isolates
// (U+202A–U+202E, U+2066–U+2069) and the line and paragraph separators
// (U+2028, U+2029). Everything else printable, spaces and TAB included, is
// kept verbatim. text must be valid UTF-8.
func CheckText(text string) error {
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c < utf8.RuneSelf {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return ErrTextControl
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		switch {
		case r >= 0x80 && r <= 0x9f,
			r >= 0x202a && r <= 0x202e,
			r >= 0x2066 && r <= 0x2069,
			r == 0x2028, r == 0x2029:
			return ErrTextControl
		}
		i += size - 1
	}
	return nil
}
